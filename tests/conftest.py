"""Test-wide settings: OpenMP threads wait passively (set before anything imports torch), tiny thread count.
Shared fixture: ``decompression_bomb``, a writer of tiny PNGs whose header claims a huge size."""

import struct
import zlib

import pytest

from dcac.cpu_threads import limit_threads_for_tiny_models, use_passive_wait

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
