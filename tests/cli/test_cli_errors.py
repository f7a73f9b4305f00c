"""Bad input to train / eval / data synth and damaged run files: one-line errors naming the file or key."""

import pytest
import torch

from dcac.cli import main
from dcac.config import ConfigError, load_run_config
from dcac.models.clip_weights import CLIPWeightsError, load_clip_vision_weights
from dcac.models.reid_encoder import CLIPReIDEncoder, ReIDEncoderConfig
from dcac.models.sd_weights import StableDiffusionWeightsError, read_checkpoint_state_dict
from dcac.storage.checkpoint import CheckpointError, load_training_checkpoint, save_training_checkpoint


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("dcac ")]
    assert len(lines) == 1, err
    return lines[0]


class _RunsCode:
    def __reduce__(self):
        return (print, ("this ran",))


def _assert_one_line_naming(err: Exception, path) -> None:
    message = str(err)
    assert "\n" not in message and str(path) in message, message
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message, message


def test_train_output_dir_that_is_a_file(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    assert main(["train", "--config", "demo", f"train.output_dir={a_file}"]) == 2
    assert "train.output_dir" in (line := _error_line(capsys)) and "is a file" in line


def test_eval_out_and_device_are_checked_before_the_run_is_loaded(tmp_path, capsys):
    missing_run = tmp_path / "no_run"
    assert main(["eval", "--checkpoint", str(missing_run), "--target", "synth_c", "--out", str(tmp_path)]) == 2
    assert "is a folder" in _error_line(capsys)
    if not torch.cuda.is_available():
        assert main(["eval", "--checkpoint", str(missing_run), "--target", "synth_c", "--device", "cuda:0"]) == 2
        assert "CUDA is not available" in _error_line(capsys)


def test_data_synth_twice_suggests_the_cli_flag(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["data", "synth", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(out)]) == 2
    line = _error_line(capsys)
    assert "already exists" in line and "--overwrite" in line and "overwrite=True" not in line
    assert main(["data", "synth", "--out", str(out), "--overwrite"]) == 0


@pytest.mark.parametrize(
    "override,key",
    [
        ("optim.epochs=0", "optim.epochs"),
        ("data.num_instances=0", "data.num_instances"),
        ("data.batch_size=0", "data.batch_size"),
    ],
)
def test_counts_below_one_are_config_errors(override, key, capsys):
    assert main(["train", "--config", "demo", override]) == 2
    assert key in _error_line(capsys)


def test_a_damaged_or_pickled_optimizer_state_is_named(tmp_path):
    save_training_checkpoint(tmp_path, {"w": torch.ones(2)}, {"state": {}, "param_groups": []}, {"epoch": 1})
    optimizer_file = tmp_path / "checkpoint" / "optimizer.pt"
    optimizer_file.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError) as caught:
        load_training_checkpoint(tmp_path / "checkpoint")
    _assert_one_line_naming(caught.value, optimizer_file)
    torch.save(_RunsCode(), optimizer_file)
    with pytest.raises(CheckpointError, match="it pickles print") as caught:
        load_training_checkpoint(tmp_path / "checkpoint")
    _assert_one_line_naming(caught.value, optimizer_file)


def test_a_damaged_run_config_is_named(tmp_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("data: {root: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: not valid YAML") as caught:
        load_run_config(config_file)
    assert "\n" not in str(caught.value)


def test_pickled_weights_refused_by_weights_only_name_the_file(tmp_path):
    malicious = tmp_path / "weights.ckpt"
    torch.save({"state_dict": _RunsCode()}, malicious)
    with pytest.raises(StableDiffusionWeightsError) as caught:
        read_checkpoint_state_dict(malicious)
    _assert_one_line_naming(caught.value, malicious)
    with pytest.raises(CLIPWeightsError) as caught:
        load_clip_vision_weights(CLIPReIDEncoder(ReIDEncoderConfig.tiny()), malicious)
    _assert_one_line_naming(caught.value, malicious)
