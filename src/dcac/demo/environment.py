"""What ``dcac demo``'s numbers depend on, recorded next to them: the same seed gives the same numbers only with
the same torch build, the same number of threads and the same CPU kernels (see README "The demo")."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

#: Environment variables that can change how many threads or which CPU kernels compute the numbers: the thread
#: count splits reductions differently, an ISA cap selects other kernels (benchmarks/demo_reproducibility.py).
NUMERIC_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "ATEN_CPU_CAPABILITY",
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "MKL_CBWR",
)


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment() -> dict:
    """torch / numpy versions, torch's intra-op threads, the CPU, its ISA level torch dispatches to, the numeric
    environment variables that are set, and the load."""
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numeric_env": {name: os.environ[name] for name in NUMERIC_ENV_VARS if name in os.environ},
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
