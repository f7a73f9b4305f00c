"""docs/method.md maps the paper to the code: the files, functions and sections it names must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "dcac"
METHOD = ROOT / "docs" / "method.md"
IDENTIFIER = re.compile(r"^[A-Za-z_]\w*(\.\w+)?$")


def _defined_names() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        names.update(re.findall(r"^\s*(?:def|class)\s+(\w+)", path.read_text(), flags=re.M))
    return names


def _code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def test_every_path_in_the_method_page_exists():
    for span in _code_spans(METHOD.read_text()):
        if span.endswith(".py") or (span.endswith("/") and "/" in span[:-1]) or span.startswith("configs/"):
            target = SRC / span.replace("*.yaml", "")
            assert target.exists() or (ROOT / span).exists(), f"docs/method.md names {span}, which does not exist"


def test_every_function_named_after_a_file_exists():
    """On a line naming a file, the identifiers after the last file name are that file's classes/functions."""
    defined = _defined_names()
    checked = 0
    for line in METHOD.read_text().splitlines():
        spans = _code_spans(line)
        files = [i for i, s in enumerate(spans) if s.endswith(".py")]
        tail = spans[files[-1] + 1 :] if files else [s for s in spans if re.match(r"^[A-Z]\w*\.\w+$", s)]
        for span in tail:
            if not IDENTIFIER.match(span) or not (files or "." in span):
                continue
            for part in span.split("."):
                assert part in defined, f"docs/method.md names {span}; no def/class {part} in src/dcac"
                checked += 1
    assert checked >= 20  # the page really names the code


def test_code_cites_only_sections_that_exist():
    sections = set(re.findall(r"^## (§\d+)", METHOD.read_text(), flags=re.M))
    cited = 0
    for path in [*SRC.rglob("*.py"), *SRC.rglob("*.yaml"), *(ROOT / "tests").rglob("*.py")]:
        text = path.read_text()
        assert "DESIGN" not in text or path.name == "test_docs.py", f"{path} cites a document outside the repository"
        for section in re.findall(r"docs/method\.md (§\d+)", text):
            assert section in sections, f"{path} cites docs/method.md {section}, which does not exist"
            cited += 1
    assert cited >= 10
