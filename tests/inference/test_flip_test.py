"""The flip test through the command line: ``dcac eval --flip-test`` scores the mean of each image's and its
mirror's feature (against two separate passes of the model), and a calibration made with it is compared with it."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F

import dcac
from dcac.cli import main
from dcac.data import get_dataset
from dcac.demo.synthetic import write_synthetic
from dcac.evaluation import evaluate_features


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    root = tmp_path_factory.mktemp("flip")
    return write_synthetic(
        root, domains=["synth_c"], num_train_ids=2, num_test_ids=6, images_per_id=4, num_distractors=0
    )["synth_c"]


def _brute_force_features(predictor, records) -> torch.Tensor:
    x = predictor.preprocess([r.path for r in records])
    with torch.no_grad():
        model = predictor.model
        plain, mirrored = model(x).feat_bn, model(x.flip(-1)).feat_bn
    return F.normalize((plain + mirrored) / 2, dim=1)


def test_eval_flip_test_scores_the_mean_of_image_and_mirror(tiny_run, target, tmp_path):
    results = {}
    for name, extra in (("plain", []), ("flip", ["--flip-test"])):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--checkpoint", str(tiny_run), "--target", str(target), "--out", str(out), *extra]) == 0
        results[name] = json.loads(out.read_text())[str(target)]
    dataset = get_dataset(str(target), str(target.parent))
    predictor = dcac.load(tiny_run)
    q, g = _brute_force_features(predictor, dataset.query), _brute_force_features(predictor, dataset.gallery)
    expected = evaluate_features(
        q,
        g,
        torch.tensor([r.pid for r in dataset.query]),
        torch.tensor([r.pid for r in dataset.gallery]),
        torch.tensor([r.camid for r in dataset.query]),
        torch.tensor([r.camid for r in dataset.gallery]),
    )
    assert results["flip"]["mAP"] == pytest.approx(100 * float(expected["mAP"]), abs=1e-4)
    assert results["flip"]["mINP"] == pytest.approx(100 * float(expected["mINP"]), abs=1e-4)
    assert results["flip"]["rank1"] == pytest.approx(100 * float(expected["cmc"][0]), abs=1e-4)
    torch.testing.assert_close(predictor.extract([r.path for r in dataset.query], flip=True), q, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(predictor.extract([r.path for r in dataset.query]), q, atol=1e-3)


def test_a_flip_test_calibration_is_compared_with_the_flip_test(tiny_run, target, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert main(["calibrate", "--checkpoint", str(run), "--target", str(target), "--fpr", "0.1", "--flip-test"]) == 0
    assert json.loads((run / "verification.json").read_text())["flip_test"] is True
    a, b = sorted((target / "query").iterdir())[:2]
    predictor = dcac.load(run)
    feats = predictor.extract([a, b], flip=True)
    answer = dcac.compare(a, b, predictor)
    assert answer.distance == pytest.approx(float(((feats[0] - feats[1]) ** 2).sum()), rel=1e-5)
