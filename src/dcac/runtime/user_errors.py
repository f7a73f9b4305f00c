"""Which exceptions ``dcac`` reports in one line instead of a traceback, and what that line says.

One line for what a user's input, disk, network or installation causes: dcac's own errors (each names its
file or key), a missing optional dependency (an ``ImportError`` saying what to ``pip install``),
``ValueError`` (bad values, undecodable text), ``OSError`` (a missing, unreadable or unwritable file, a full
disk, a refused connection, Hugging Face Hub errors), and the errors of the libraries that report a damaged
file or an unreachable server with classes of their own (safetensors, Pillow's decompression bomb, protobuf
(ONNX), YAML, httpx, urllib3). Anything else, a bug, keeps its traceback.
"""

from __future__ import annotations

import errno
import importlib
import sys

# errnos that only a program's own mistake produces (a closed descriptor, a bad address): bugs, not input
_BUG_ERRNOS = (errno.EBADF, errno.EFAULT)

# (module, class) of the libraries' own error classes; only modules already imported are looked at, since
# an exception cannot come from a library that was never imported (and the CLI stays quick to start)
_HTTP_CLIENT_ERRORS = (("httpx", "HTTPError"), ("httpx2", "HTTPError"), ("urllib3.exceptions", "HTTPError"))
_LIBRARY_ERRORS = (
    ("safetensors", "SafetensorError"),
    ("PIL.Image", "DecompressionBombError"),
    ("google.protobuf.message", "DecodeError"),
    ("yaml", "YAMLError"),
    ("huggingface_hub.errors", "EntryNotFoundError"),
    *_HTTP_CLIENT_ERRORS,
)


def _dcac_errors() -> tuple[type[BaseException], ...]:
    """dcac's error classes that are not ``ValueError``/``OSError`` (those are covered as such)."""
    from dcac.storage.errors import CheckpointError

    found: list[type[BaseException]] = [CheckpointError]
    if "dcac.inference.onnx_export" in sys.modules:
        found.append(sys.modules["dcac.inference.onnx_export"].ExportMismatchError)
    return tuple(found)


def _imported_classes(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    found = []
    for module_name, class_name in names:
        if module_name in sys.modules:
            error_class = getattr(importlib.import_module(module_name), class_name, None)
            if isinstance(error_class, type):
                found.append(error_class)
    return tuple(found)


def network_errors() -> tuple[type[BaseException], ...]:
    """What an unreachable or refusing server raises: ``OSError`` (``requests``' errors are ones) and the
    HTTP clients' own base classes (httpx, urllib3), of the clients already imported."""
    return (OSError, *_imported_classes(_HTTP_CLIENT_ERRORS))


def is_user_error(err: BaseException) -> bool:
    """Whether ``err`` comes from the user's input, disk or network (one line), not from a bug (traceback)."""
    if isinstance(err, OSError):
        return err.errno not in _BUG_ERRNOS
    if isinstance(err, ImportError):
        # dcac's own message for a missing optional extra says what to install; any other is a broken install
        return "pip install" in str(err)
    return isinstance(err, (ValueError, *_dcac_errors(), *_imported_classes(_LIBRARY_ERRORS)))


def error_line(err: BaseException) -> str:
    """The one line that reports ``err``; a library's error is prefixed with its class name."""
    from dcac.storage.disk_space import DiskFullError

    message = str(err).strip()
    if type(err).__module__.split(".")[0] in ("dcac", "builtins") or isinstance(err, DiskFullError):
        return " ".join(line.strip() for line in message.splitlines()) or type(err).__name__
    first_line = message.splitlines()[0] if message else ""
    return f"{type(err).__name__}: {first_line}" if first_line else type(err).__name__
