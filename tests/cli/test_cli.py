"""The command line as a user types it (through ``dcac.cli.main``), on synthetic data with tiny models."""

import json

import pytest

from dcac.cli import main


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_data")
    assert main(["data", "synth", "--out", str(root)]) == 0
    return root


def test_data_synth_and_stats(synth_root, capsys):
    assert {p.name for p in synth_root.iterdir()} >= {"synth_a", "synth_b", "synth_c", "synth_ms"}
    assert main(["data", "stats", "synth_ms", "--root", str(synth_root)]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "gallery" in out


def test_presets_listed(capsys):
    assert main(["presets"]) == 0
    names = capsys.readouterr().out.split()
    assert {"ma_to_ms", "ms_to_ma", "d_to_ma", "c3_to_ma", "baseline", "demo"} <= set(names)


def test_train_then_eval(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = [
        "train",
        "--config",
        "demo",
        f"data.root={synth_root}",
        f"train.output_dir={run}",
        "optim.epochs=1",
        "train.max_steps_per_epoch=2",
        "train.progress=false",
    ]
    assert main(args) == 0
    assert (run / "reid_model.safetensors").is_file()
    out_json = tmp_path / "metrics.json"
    assert main(["eval", "--checkpoint", str(run), "--target", "synth_c", "synth_a", "--out", str(out_json)]) == 0
    metrics = json.loads(out_json.read_text())
    assert set(metrics) == {"synth_c", "synth_a"}
    for m in metrics.values():
        assert 0 <= m["mAP"] <= 100 and 0 <= m["rank1"] <= 100 and len(m["cmc"]) == 50
    # The evaluation of the run's own target reproduces the number the trainer recorded.
    recorded = json.loads((run / "metrics.json").read_text())["targets"]["synth_c"]
    assert metrics["synth_c"]["mAP"] == pytest.approx(recorded["mAP"], abs=1e-6)
    assert main(["eval", "--checkpoint", str(run), "--target", "synth_c", "--rerank", "--out", str(out_json)]) == 0
    assert 0 <= json.loads(out_json.read_text())["synth_c"]["mAP"] <= 100


def test_user_errors_exit_2_and_name_the_problem(tmp_path, capsys):
    assert main(["train", "--config", "demo", "optim.nosuchkey=1"]) == 2
    assert "optim.nosuchkey" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_preset"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "missing"), "--target", "synth_c"]) == 2
    assert "missing" in capsys.readouterr().err
    assert (
        main(["train", "--config", "demo", f"data.root={tmp_path / 'nodata'}", f"train.output_dir={tmp_path / 'r'}"])
        == 2
    )
    assert "nodata" in capsys.readouterr().err
