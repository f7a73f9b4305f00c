"""What ``demo_results.json`` records about the numbers' environment: the CPU kernels torch uses and the numeric
environment variables that are set."""

import torch

from dcac.demo.environment import NUMERIC_ENV_VARS, environment


def test_environment_records_the_cpu_capability_and_the_numeric_variables_that_are_set(monkeypatch):
    for name in NUMERIC_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    record = environment()
    assert record["numeric_env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "3"}
    assert record["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert record["threads"] == torch.get_num_threads()
