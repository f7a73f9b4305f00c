"""`dcac export --help` tells a CPU user what int8 is worth on their CPU (faster only with VNNI)."""

from __future__ import annotations

import pytest

from dcac.cli import main


def test_export_help_says_when_int8_is_faster_and_what_it_gives_otherwise(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "VNNI" in text and "avx512_vnni" in text
    assert "may be no faster than fp32" in text and "4x smaller file" in text
