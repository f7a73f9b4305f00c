"""Every class of error a user's input, disk or network can raise is one line from ``dcac``; a bug keeps its
traceback (issue 22, item 21)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dcac.cli import main
from dcac.runtime.user_errors import error_line, is_user_error


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(lines) == 1, err
    return lines[0]


def _library_errors() -> list[BaseException]:
    """Real instances of the libraries' own error classes, raised by the libraries themselves."""
    import yaml
    from google.protobuf.message import DecodeError
    from PIL.Image import DecompressionBombError
    from safetensors import SafetensorError
    from safetensors.torch import load

    errors: list[BaseException] = [DecompressionBombError("Image size (400000000 pixels) exceeds limit"), DecodeError()]
    for attempt in (lambda: load(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}"), lambda: yaml.safe_load("a: [1")):
        try:
            attempt()
        except (SafetensorError, yaml.YAMLError) as err:
            errors.append(err)
    assert len(errors) == 4
    return errors


def _network_errors() -> list[BaseException]:
    found: list[BaseException] = [ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")]
    for name in ("httpx", "httpx2"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        found.append(module.ConnectError("[Errno -2] Name or service not known"))
    import requests
    import urllib3

    found += [requests.ConnectionError("Max retries exceeded"), urllib3.exceptions.NewConnectionError(None, "refused")]
    return found


def test_disk_input_and_network_errors_are_one_line():
    cases = [
        OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out.safetensors"),
        OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/run"),
        OSError(errno.EROFS, os.strerror(errno.EROFS), "/mnt/ro/x.json"),
        OSError(errno.EIO, os.strerror(errno.EIO), "/data/a.jpg"),
        ValueError("bad value"),
        ImportError("the gallery index needs faiss: pip install 'dcac[ann]' (faiss-cpu)"),
        *_library_errors(),
        *_network_errors(),
    ]
    for err in cases:
        assert is_user_error(err), repr(err)
        line = error_line(err)
        assert line and "\n" not in line, repr(err)
    assert "/data/out.safetensors" in error_line(cases[0])
    assert error_line(_network_errors()[-1]).startswith("NewConnectionError: ")


@pytest.mark.parametrize(
    "bug",
    [
        KeyError("x"),
        TypeError("unsupported operand"),
        AttributeError("'NoneType' object has no attribute 'x'"),
        RuntimeError("shape mismatch"),
        AssertionError(),
        OSError(errno.EBADF, os.strerror(errno.EBADF)),
        ModuleNotFoundError("No module named 'dcac.missing'"),
    ],
)
def test_bugs_keep_their_traceback(bug):
    assert not is_user_error(bug)


def _csv_dataset(folder: Path, rows: list[str], encoding: str = "utf-8") -> Path:
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 16, 3), 40 * i, dtype=np.uint8)).save(folder / f"img{i}.png")
    list_file = folder / "list.csv"
    list_file.write_bytes(("path,pid,camid,split\n" + "".join(row + "\n" for row in rows)).encode(encoding))
    return list_file


def test_a_latin1_csv_list_names_the_file_and_line(tmp_path, capsys):
    rows = ["img0.png,1,0,query", "img1.png,1,1,gallery", "caf\xe9.png,2,0,gallery"]
    list_file = _csv_dataset(tmp_path / "shop", rows, encoding="latin-1")
    assert main(["data", "check", str(list_file)]) == 2
    line = _error_line(capsys)
    assert f"{list_file}, line 4" in line and "UTF-8" in line, line


@pytest.mark.parametrize("field", ["pid", "camid"])
def test_an_id_too_large_for_64_bits_names_the_line(tmp_path, capsys, field):
    huge = str(10**23)
    rows = ["img0.png,1,0,query", "img1.png,1,1,gallery", "img2.png,2,0,query", "img3.png,2,1,gallery"]
    rows[2] = f"img2.png,{huge},0,query" if field == "pid" else f"img2.png,2,{huge},query"
    list_file = _csv_dataset(tmp_path / "shop", rows)
    assert main(["data", "check", str(list_file)]) == 2
    line = _error_line(capsys)
    assert f"{list_file}, line 4" in line and field in line and huge in line, line


def test_a_damaged_clip_safetensors_file_names_it(tmp_path):
    from dcac.models.clip_weights import CLIPWeightsError, load_clip_vision_weights
    from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig

    damaged = tmp_path / "ViT-B-16.safetensors"
    damaged.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    encoder = CLIPReIDEncoder(
        ReIDEncoderConfig(image_size=(32, 16), hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    )
    with pytest.raises(CLIPWeightsError) as caught:
        load_clip_vision_weights(encoder, damaged)
    assert str(damaged) in str(caught.value) and "\n" not in str(caught.value)
