"""``data.on_corrupt=skip`` with a training identity whose every image is unreadable: the identity is
dropped, the others renumbered, and the skip count says so (it used to stop at the memory rebuild)."""

import shutil

import pytest

from dcac.config import load_config
from dcac.demo.synthetic import write_synthetic
from dcac.engine.trainer import train
from dcac.storage.checkpoint import load_tensors


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, seed=0)
    return root


def test_an_identity_without_a_readable_image_is_dropped_and_counted(synth_root, tmp_path, capsys, decompression_bomb):
    data = shutil.copytree(synth_root, tmp_path / "data")
    train_dir = data / "synth_a" / "bounding_box_train"
    pids = sorted({p.name.split("_")[0] for p in train_dir.glob("*.jpg")})
    lost = sorted(train_dir.glob(f"{pids[1]}_*.jpg"))
    for image in lost[1:]:
        image.write_bytes(b"not a jpeg")
    decompression_bomb(lost[0])  # skipped and counted like any unreadable image
    out = tmp_path / "run"
    cfg = load_config(
        "demo",
        [
            f"data.root={data}",
            "data.sources=[synth_a]",
            f"train.output_dir={out}",
            "train.progress=false",
            "optim.epochs=1",
            "optim.warmup_epochs=0",
            "optim.milestones=[1]",
            "train.max_steps_per_epoch=1",
            "data.on_corrupt=skip",
        ],
    )
    train(cfg)
    assert (
        f"skipped {len(lost)} unreadable training images; dropped 1 identity with no readable image "
        f"(the other {len(pids) - 1} renumbered 0..{len(pids) - 2})"
    ) in capsys.readouterr().out
    classifier = [v for k, v in load_tensors(out / "reid_model.safetensors").items() if k.startswith("classifier")]
    assert classifier and all(v.shape[0] == len(pids) - 1 for v in classifier)
