"""A user's folders in the three layouts train and evaluate with no code: two sources, an evaluation-only target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dcac.cli import main
from dcac.data import get_dataset
from dcac.demo.synthetic import write_synthetic


def as_identity_folders(market_dir: Path, out: Path, *, splits: tuple[str, ...], cameras: bool) -> Path:
    """Copy a Market-layout set into train|query|gallery/<identity>/[c<C>/]<image>."""
    dataset = get_dataset(str(market_dir), "")
    for split in splits:
        for record in getattr(dataset, split):
            name = Path(record.path).name
            identity = name.split("_")[0]
            camera = f"c{record.camid}/" if cameras else ""
            target = out / split / identity / camera / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(record.path, target)
    return out


def as_csv_list(market_dir: Path, out: Path) -> Path:
    """A CSV list of the training split (paths relative to the list file)."""
    dataset = get_dataset(str(market_dir), "")
    (out / "images").mkdir(parents=True)
    rows = ["path,pid,camid,split"]
    for record in dataset.train:
        name = Path(record.path).name
        shutil.copy(record.path, out / "images" / name)
        rows.append(f"images/{name},{int(name.split('_')[0])},{record.camid},train")
    (out / "list.csv").write_text("\n".join(rows) + "\n")
    return out / "list.csv"


@pytest.mark.slow  # a real (tiny) training run: ~30 s idle, minutes on a loaded machine
def test_train_on_folder_and_csv_sources_and_evaluate_an_evaluation_only_target(tmp_path: Path, capsys) -> None:
    written = write_synthetic(tmp_path / "synth", seed=0)
    shop_a = as_identity_folders(written["synth_a"], tmp_path / "a" / "shop_a", splits=("train",), cameras=True)
    shop_b = as_csv_list(written["synth_b"], tmp_path / "b")
    shop_c = as_identity_folders(
        written["synth_c"], tmp_path / "c" / "shop_c", splits=("query", "gallery"), cameras=False
    )
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--config",
                "demo",
                f"data.sources=[{shop_a},{shop_b}]",
                f"data.targets=[{shop_c}]",
                f"train.output_dir={run}",
                "optim.epochs=1",
                "train.max_steps_per_epoch=2",
                "train.progress=false",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Training on shop_a + list" in printed and "no cameras given" in printed
    info = json.loads((run / "run_info.json").read_text())
    a, b = get_dataset(str(shop_a), ""), get_dataset(str(shop_b), "")
    assert info["num_ids"] == a.num_train_pids + b.num_train_pids
    recorded = json.loads((run / "metrics.json").read_text())["targets"]["shop_c"]
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run), "--target", str(shop_c), "--out", str(out)]) == 0
    assert json.loads(out.read_text())[str(shop_c)]["mAP"] == recorded["mAP"]
