"""Test-wide settings: OpenMP threads wait passively (set before anything imports torch), tiny thread count.
Shared fixtures: ``decompression_bomb``, a writer of tiny PNGs whose header claims a huge size; ``boxmot``;
``chromium``, headless Chromium rendering a page."""

import importlib
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from dcac.runtime.cpu_threads import limit_threads_for_tiny_models, use_passive_wait

use_passive_wait()
limit_threads_for_tiny_models()


def _write_decompression_bomb(path, width: int = 20000, height: int = 20000):
    """A 1-pixel PNG at ``path`` whose header claims ``width × height`` pixels (CRC fixed, only the size lies)."""
    from PIL import Image

    Image.new("L", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR's width and height
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # CRC of chunk type + IHDR data
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="session")
def decompression_bomb():
    """``decompression_bomb(path)``: a tiny PNG claiming 20000×20000 pixels, which Pillow refuses to open."""
    return _write_decompression_bomb


@pytest.fixture(scope="session")
def boxmot():
    """BoxMOT as ``tools/install_boxmot.sh`` installs it: skipped without it, except in CI (``CI`` set), where
    ``.ci/run`` installs it and a missing or half-installed BoxMOT is a failure."""
    try:
        module = importlib.import_module("boxmot")
        from boxmot.reid.backends.dependencies import reid_backend_requirements
        from boxmot.utils.checks import requirement_satisfied
    except ImportError as err:
        if os.environ.get("CI"):
            raise AssertionError(f"CI installs BoxMOT with tools/install_boxmot.sh, but: {err}") from err
        pytest.skip(f"BoxMOT is not installed ({err}); tools/install_boxmot.sh installs it")
    needed = reid_backend_requirements("onnx", device="cpu")
    # Without it BoxMOT pip-installs onnxruntime itself on the first ONNX load: never let a test do that.
    if not any(requirement_satisfied(requirement) for requirement in needed):
        message = f"BoxMOT's ONNX backend needs {needed[0]}; tools/install_boxmot.sh installs it"
        if os.environ.get("CI"):
            raise AssertionError(message)
        pytest.skip(message)
    return module


class HeadlessChromium:
    """Renders local HTML files in headless Chromium: the DOM after layout and scripts, and a screenshot."""

    def __init__(self, binary: str, profile: Path):
        # A fresh profile per test, and nothing that reaches the network: the pages are self-contained.
        self.flags = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
        ]

    def dump_dom(self, page: Path, budget_ms: int = 5000) -> str:
        """The serialised DOM once the page has loaded and its scripts ran (``budget_ms`` of virtual time)."""
        done = subprocess.run(
            [*self.flags, f"--virtual-time-budget={budget_ms}", "--dump-dom", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.stdout.strip(), f"chromium dumped no DOM for {page}: {done.stderr[-2000:]}"
        return done.stdout

    def screenshot(self, page: Path, out: Path, width: int, height: int) -> Path:
        """A ``width`` x ``height`` PNG of the rendered page at ``out``."""
        done = subprocess.run(
            [*self.flags, f"--window-size={width},{height}", f"--screenshot={out}", page.as_uri()],
            capture_output=True,
            timeout=120,
        )
        assert out.is_file(), f"chromium wrote no screenshot of {page}: {done.stderr[-2000:]!r}"
        return out


@pytest.fixture
def chromium(tmp_path):
    """Headless Chromium (:class:`HeadlessChromium`): skipped where it is not installed, except in CI (``CI`` set),
    where ``.ci/run`` installs it and a missing browser is a failure."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        message = "the chromium binary is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI"):
            raise AssertionError(f"CI installs Chromium in .ci/run, but {message}")
        pytest.skip(message)
    return HeadlessChromium(binary, tmp_path / "chromium-profile")
