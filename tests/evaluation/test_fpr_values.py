"""``--fpr`` of ``dcac eval --roc`` and ``dcac calibrate``, and ``fprs`` of ``verification_metrics``: a
false-positive rate is a number with 0 < FPR < 1; anything else is one line naming it (issue 22, item 14)."""

from __future__ import annotations

import pytest
import torch

from dcac.cli import main
from dcac.evaluation.roc import verification_metrics

BAD = ["-0.5", "inf", "nan", "2", "0", "1", "-inf", "1e400"]


def _argparse_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("command", [["eval", "--target", "synth_c", "--roc"], ["calibrate", "--target", "synth_c"]])
def test_cli_refuses_an_fpr_outside_0_1(tmp_path, capsys, command, value):
    with pytest.raises(SystemExit) as caught:
        main([*command, "--checkpoint", str(tmp_path / "run"), f"--fpr={value}"])
    assert caught.value.code == 2
    line = _argparse_error(capsys)
    assert "--fpr" in line and "0 < FPR < 1" in line and value in line, line


def test_cli_names_a_value_that_is_no_number(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--target", "synth_c", "--checkpoint", str(tmp_path / "run"), "--fpr", "1%"])
    line = _argparse_error(capsys)
    assert "--fpr" in line and "got 1%" in line, line


@pytest.mark.parametrize("value", [-0.5, float("inf"), float("nan"), 2.0, 0.0, 1.0])
def test_verification_metrics_refuses_an_fpr_outside_0_1(value):
    feats = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    pids, cams = [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"fprs: .*0 < FPR < 1"):
        verification_metrics(feats, feats, pids, pids, cams, cams, fprs=(1e-3, value))
