"""What the ``dcac`` command does before any work: no torch for --help, passive OpenMP waiting."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import dcac

SRC = str(Path(dcac.__file__).parents[1])


def _python(code: str, **env_changes: str | None) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    for key, value in env_changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["extract", "--help"], ["search", "--help"]])
def test_help_does_not_import_torch(argv):
    out = _python(
        "import sys\n"
        "from dcac.cli import build_parser, main\n"
        "build_parser()\n"
        "assert 'torch' not in sys.modules, 'building the parser imported torch'\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch imported:', 'torch' in sys.modules)\n"
    )
    assert out.strip().endswith("torch imported: False"), out


def test_the_cli_sets_a_passive_openmp_wait_before_torch_is_imported():
    check = "import os, sys\nimport dcac.cli\nprint(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    assert _python(check, OMP_WAIT_POLICY=None).split() == ["PASSIVE", "False"]
    assert _python(check, OMP_WAIT_POLICY="ACTIVE").split() == ["ACTIVE", "False"]  # the user's choice is kept


def test_tiny_model_thread_cap_keeps_an_explicit_thread_count():
    code = (
        "import torch\n"
        "from dcac.runtime.cpu_threads import limit_threads_for_tiny_models\n"
        "torch.set_num_threads(8)\n"
        "limit_threads_for_tiny_models(3)\n"
        "print(torch.get_num_threads())\n"
    )
    assert _python(code, OMP_NUM_THREADS=None).strip() == "3"
    assert _python(code, OMP_NUM_THREADS="1").strip() == "8"
