"""Shared helpers of the speed benchmarks: device facts, synchronised timing, peak memory, tables, JSON.

Timing is wall-clock around work that is synchronised with the device (``torch.cuda.synchronize``), so
queued kernels are counted where they run, and warm-up work is never inside a timed region.

Peak memory is what the device can report honestly: on CUDA ``torch.cuda.max_memory_allocated`` (tensors
allocated by PyTorch since the last reset); on CPU the process's peak resident set size
(``getrusage().ru_maxrss``), which covers *everything* the process ever held — interpreter, libraries,
both models — so it is comparable only between processes that did the same set-up.

torch is imported inside the functions that use it, so a parent process that only starts benchmark
workers and formats their results starts in a fraction of a second.
"""

from __future__ import annotations

import json
import os
import platform
import re
import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: Libraries whose versions decide the numbers; recorded in every result file.
_LIBRARIES = ("torch", "diffusers", "transformers", "peft", "accelerate")


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if given, else CUDA when available, else the CPU."""
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def result_slug(env: dict[str, Any] | None) -> str:
    """A file-name-safe name of the device in an :func:`environment` record (``nvidia_h100_80gb_hbm3``, ``cpu``)."""
    if not env or env.get("device") != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "_", str(env.get("device_name", "cuda")).lower()).strip("_")


def environment(device: torch.device) -> dict[str, Any]:
    """Facts that decide the numbers: device, library versions, CPU count."""
    import torch

    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "torch_version": torch.__version__,
        "versions": versions,
        "cuda_version": torch.version.cuda,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        # Other work on the machine slows every number down; on a shared CPU this says how much there was.
        "load_average_1m": os.getloadavg()[0],
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["device_memory_bytes"] = props.total_memory
        info["cudnn_version"] = torch.backends.cudnn.version()
    return info


def synchronize(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> dict[str, Any]:
    """``{"peak_memory_bytes": int, "memory_kind": str}``; see the module docstring for what each kind covers."""
    import torch

    if device.type == "cuda":
        return {
            "peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)),
            "memory_kind": "cuda_max_memory_allocated",
        }
    # Linux reports ru_maxrss in KiB.
    return {
        "peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "memory_kind": "process_peak_rss",
    }


def time_calls(
    fn: Callable[[], Any], *, warmup: int, repeats: int, device: torch.device, sync_each_call: bool = True
) -> dict[str, float | None]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    With ``sync_each_call`` every call is synchronised with the device and timed alone (``median_s``);
    without, the timed calls run back to back and only the whole run is synchronised, so the host may queue
    the next call's work while the device finishes the last, as a training loop does (``median_s`` is None).
    Returns the total and mean seconds of the timed calls, and the seconds the warm-up took (where one-off
    costs such as compilation and allocator growth land).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    synchronize(device)
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    synchronize(device)
    warmup_s = time.perf_counter() - start
    durations = []
    start = time.perf_counter()
    for _ in range(repeats):
        call_start = time.perf_counter()
        fn()
        if sync_each_call:
            synchronize(device)
            durations.append(time.perf_counter() - call_start)
    synchronize(device)
    total = sum(durations) if sync_each_call else time.perf_counter() - start
    median = statistics.median(durations) if sync_each_call else None
    return {"total_s": total, "mean_s": total / repeats, "median_s": median, "repeats": repeats, "warmup_s": warmup_s}


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` are (key, header) pairs; missing values print as ``-``."""

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(header for _, header in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def gib(num_bytes: int | None) -> float | None:
    return None if num_bytes is None else num_bytes / 2**30


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus a UTC timestamp) as indented JSON, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    return path


def worker_environment() -> dict[str, str]:
    """The workers' environment: OpenMP threads wait passively unless the caller says otherwise, as ``dcac``'s
    CLI sets it (``dcac.runtime.cpu_threads``): spinning threads stall every short parallel pass beside other work."""
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


#: Prefix of the one stdout line in which a benchmark's worker subprocess reports its result as JSON.
RESULT_TAG = "RESULT "


def report_result(result: dict[str, Any]) -> None:
    """A worker's result, as the line :func:`spawn_worker` reads back."""
    print(RESULT_TAG + json.dumps(result), flush=True)


def spawn_worker(cmd: list[str]) -> dict[str, Any]:
    """Run one benchmark worker subprocess (``cmd``) in :func:`worker_environment` and return the result it reported,
    or ``{"error": ...}``. The machine may be shared: the 1-minute load average when it started is recorded too."""
    load_start = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_environment())
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-2000:]}"}
    line = next(line for line in proc.stdout.splitlines() if line.startswith(RESULT_TAG))
    return {**json.loads(line[len(RESULT_TAG) :]), "load_average_1m_start": load_start}


def faster_run(best: dict[str, Any] | None, run: dict[str, Any]) -> dict[str, Any]:
    """Of two runs of one variant, the one to keep: the faster, a run that worked over one that failed."""
    if best is None or "error" in best or ("error" not in run and run["seconds"] < best["seconds"]):
        return run
    return best
