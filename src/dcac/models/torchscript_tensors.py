"""The parameters and buffers of a TorchScript archive, read without running any of its code.

``torch.jit.load`` compiles the archive's code and runs it (a module's ``__setstate__`` runs during the
load), so a crafted file executes on the machine that opens it. OpenAI distributes CLIP as such an archive.
Its tensors do not need the code: the zip holds the pickled object tree (``<name>/data.pkl``: module
objects whose state is a dict of attributes, tensors rebuilt by ``torch._utils._rebuild_tensor_v2`` from
storages) and the raw storages (``<name>/data/<key>``). A restricted unpickler that knows only those few
globals rebuilds the tensors; any other global is refused, so nothing in the file is ever called.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

# The storage classes a TorchScript pickle names, and the dtype each holds.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class TorchScriptReadError(ValueError):
    """A TorchScript archive whose tensors cannot be read without running its code (names the file)."""


class _ScriptObject:
    """Stands in for a pickled TorchScript module: it only keeps the state it is given, runs nothing."""

    def __setstate__(self, state) -> None:
        self.state = state


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    # torch._utils._rebuild_tensor_v2's arguments; hooks (an empty OrderedDict) and metadata are not restored.
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def _restore_type_tag(value, type_str):
    return value  # the tag only records a container's static type for the TorchScript compiler


def _plain_list(values):
    return list(values)


_ALLOWED_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    ("torch.jit._pickle", "build_intlist"): _plain_list,
    ("torch.jit._pickle", "build_doublelist"): _plain_list,
    ("torch.jit._pickle", "build_boollist"): _plain_list,
    ("torch.jit._pickle", "build_tensorlist"): _plain_list,
}


class _TensorOnlyUnpickler(pickle.Unpickler):
    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(archive.open(f"{prefix}data.pkl"))
        self.archive, self.prefix, self.path = archive, prefix, path
        self.storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) in _ALLOWED_FUNCTIONS:
            return _ALLOWED_FUNCTIONS[(module, name)]
        raise TorchScriptReadError(f"{self.path}: refusing the pickled global {module}.{name} (only tensors are read)")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise TorchScriptReadError(f"{self.path}: unexpected persistent id {pid!r}")
        if key not in self.storages:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if flat.numel() != numel:
                raise TorchScriptReadError(
                    f"{self.path}: storage {key} holds {flat.numel()} elements, expected {numel}"
                )
            self.storages[key] = flat
        return self.storages[key]


def _archive_prefix(archive: zipfile.ZipFile, path: Path) -> str:
    prefixes = sorted(
        {n[: -len("data.pkl")] for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1}
    )
    if len(prefixes) != 1:
        raise TorchScriptReadError(f"{path}: not a TorchScript archive with one '<name>/data.pkl'")
    byteorder = f"{prefixes[0]}byteorder"
    if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
        raise TorchScriptReadError(f"{path}: big-endian TorchScript archives are not supported")
    return prefixes[0]


def _has_custom_setstate(archive: zipfile.ZipFile, prefix: str) -> bool:
    code = (n for n in archive.namelist() if n.startswith(f"{prefix}code/") and n.endswith(".py"))
    return any(b"def __setstate__(" in archive.read(name) for name in code)


def _collect(obj: _ScriptObject, prefix: str, out: dict[str, torch.Tensor], path: Path) -> None:
    if not isinstance(getattr(obj, "state", None), dict):
        raise TorchScriptReadError(f"{path}: a module at '{prefix or '<root>'}' has no plain attribute state")
    for name, value in obj.state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptObject):
            _collect(value, f"{prefix}{name}.", out, path)


def read_torchscript_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor attribute of the archive's modules by dotted name (as ``state_dict()`` names them).

    Refuses (:class:`TorchScriptReadError`, naming the file) an archive whose modules define
    ``__setstate__``: their pickled state means only what that code makes of it.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        prefix = _archive_prefix(archive, path)
        if _has_custom_setstate(archive, prefix):
            raise TorchScriptReadError(
                f"{path}: the TorchScript archive defines __setstate__, code that would run on loading; "
                'convert it where you trust it: python -c "import torch, safetensors.torch as st; '
                f"st.save_file({{k: v.contiguous() for k, v in torch.jit.load('{path}').state_dict().items()}}, "
                f"'{path.with_suffix('.safetensors')}')\""
            )
        try:
            root = _TensorOnlyUnpickler(archive, prefix, path).load()
        except TorchScriptReadError:
            raise
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            raise TorchScriptReadError(f"{path}: cannot read the TorchScript archive's tensors: {err}") from err
    if not isinstance(root, _ScriptObject):
        raise TorchScriptReadError(f"{path}: the TorchScript archive does not hold a module")
    tensors: dict[str, torch.Tensor] = {}
    _collect(root, "", tensors, path)
    return tensors
