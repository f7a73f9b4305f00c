"""No import of another package's private module or name: those move or vanish in any release.

Every ``import`` / ``from … import`` in src, tests and benchmarks is read with ``ast``. An import is private when
a module part or an imported name starts with an underscore (``__future__`` and dunders aside), or when it names
a module its package keeps out of its public API (``INTERNAL_MODULES``). dcac's own modules (``dcac.*``, test
and benchmark modules importing each other) are exempt. ``ALLOWED`` lists the imports kept on purpose, each with
why and what holds it in place; every entry must still match an import, so the list cannot outlive its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("src", "tests", "benchmarks")
# Modules without an underscore in their name that their package documents as internal.
INTERNAL_MODULES = ("diffusers.loaders.single_file_utils", "diffusers.models.modeling_utils")

ALLOWED = {
    ("tests/engine/test_host_syncs.py", "torch.utils._python_dispatch"): (
        "TorchDispatchMode, the only way to see every aten operator a step runs; PyTorch has no public alias "
        "(torch.overrides has only TorchFunctionMode, which sees no aten operators). A test, not the package."
    ),
}


def _local_modules() -> set[str]:
    """Names that resolve to this repository's own files (tests and benchmarks import each other)."""
    return {"dcac"} | {p.stem for folder in ("tests", "benchmarks") for p in (ROOT / folder).rglob("*.py")}


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_imports() -> list[tuple[str, str, int]]:
    """(file, module, line) of every private import of another package."""
    local, found = _local_modules(), []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    imports = [(alias.name, []) for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imports = [(node.module, [alias.name for alias in node.names])]
                else:
                    continue
                for module, names in imports:
                    if module.split(".")[0] in local:
                        continue
                    parts = module.split(".") + names
                    if any(map(_is_private, parts)) or module.startswith(INTERNAL_MODULES):
                        found.append((path.relative_to(ROOT).as_posix(), module, node.lineno))
    return found


def test_no_private_imports_of_other_packages():
    unexpected = [
        f"{file}:{line}: {module}" for file, module, line in private_imports() if (file, module) not in ALLOWED
    ]
    assert not unexpected, "imports of other packages' private modules or names:\n" + "\n".join(unexpected)


def test_every_allowed_private_import_still_exists():
    found = {(file, module) for file, module, _ in private_imports()}
    assert set(ALLOWED) <= found, f"ALLOWED entries that match no import any more: {set(ALLOWED) - found}"


def test_the_check_finds_private_imports(tmp_path, monkeypatch):
    """The scan can fail: a private module, a private name and an internal module are all found."""
    (tmp_path / "src").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "src" / "x.py").write_text(
        "import torch._dynamo\nfrom numpy import _core\nfrom diffusers.models.modeling_utils import f\n"
        "from __future__ import annotations\nimport dcac._private\n"
    )
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert [(m, line) for _, m, line in private_imports()] == [
        ("torch._dynamo", 1),
        ("numpy", 2),
        ("diffusers.models.modeling_utils", 3),
    ]
