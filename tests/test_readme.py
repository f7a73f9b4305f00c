"""Every ```bash and ```python block of README.md runs as written (after ``dcac demo``, as the README says).

The demo is run once with fewer epochs (its numbers are not what the blocks check); each block then runs
unchanged in the folder that holds ``runs/demo``. The blocks in ``NOT_RUN`` are skipped, each for the
reason given; every entry must still match a block, so the list cannot silently outlive its block.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dcac

README = Path(__file__).resolve().parents[1] / "README.md"
SRC = Path(dcac.__file__).resolve().parents[1]

# A text every such block contains -> why it is not run here.
NOT_RUN = {
    "pip install torch==2.13.0 && pip install -e . && dcac demo": "installs packages into the environment "
    "(its `dcac demo` is what the fixture runs)",
    'pip install torch==2.13.0 && pip install -e ".[test]"': "installs packages and runs this whole test suite",
    "dcac train --config ma_to_ms data.root=/data": "needs the real datasets and the pre-trained weights",
    "torchrun --standalone": "needs several GPUs and the real datasets",
    "torchrun --nnodes M": "needs several machines",
    "ruff check src tests benchmarks": "runs on the repository itself, which .ci/run does after the tests",
    "pip install --no-deps boxmot==25.0.0": "installs packages: tools/install_boxmot.sh, which .ci/run runs "
    "before the tests (tests/inference/test_boxmot.py checks that both say the same)",
}
_BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(README.read_text(encoding="utf-8"))]


def _skip_reason(code: str) -> str | None:
    return next((why for text, why in NOT_RUN.items() if text in code), None)


def test_every_skip_entry_matches_a_block():
    codes = [code for _, code in readme_blocks()]
    for text in NOT_RUN:
        assert any(text in code for code in codes), f"NOT_RUN entry {text!r} matches no README block"


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("readme")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [sys.executable, "-m", "dcac.cli", "demo", "--epochs", "1"],
        cwd=folder,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return folder, env


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs_as_written(index, demo_folder, request):
    language, code = readme_blocks()[index]
    reason = _skip_reason(code)
    if reason is not None:
        pytest.skip(f"README block {index}: {reason}")
    if "from boxmot" in code:
        request.getfixturevalue("boxmot")  # skipped where BoxMOT is not installed, except in CI (tests/conftest.py)
    folder, env = demo_folder
    command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (
        f"README {language} block {index} failed:\n{code}\n--- stderr ---\n{done.stderr[-3000:]}"
    )
