"""extract / search / explain / export: bad --out, --device, --alpha and a missing extra are one-line
errors before any work; --on-corrupt skip drops unreadable images; an all-zero activation map is reported."""

from __future__ import annotations

import importlib.util
import logging
import os

import pytest
from safetensors import safe_open

from dcac.cli import main
from dcac.storage.checkpoint import load_tensors, save_tensors_atomic


def _one_line_error(capsys, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("dcac ")]  # progress bars may precede it
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def test_output_paths_of_the_wrong_kind_are_refused_before_the_work(
    tiny_run, image_tree, tmp_path, a_file, capsys, monkeypatch
):
    def no_work(*args, **kwargs):
        raise AssertionError("the command started working before checking --out")

    monkeypatch.setattr("dcac.inference.predictor.ReIDPredictor.from_run", no_work)
    gallery, query = str(image_tree["gallery"]), str(image_tree["query"])
    cases = [
        (["extract", gallery, "--out", str(tmp_path)], "is a folder"),  # a folder where a file is expected
        (["extract", gallery, "--out", str(a_file / "f.safetensors")], "is a file"),  # a file where a folder is
        (["search", query, "--gallery", gallery, "--out", str(a_file)], "is a file"),
        (["explain", query, "--out", str(a_file)], "is a file"),
        (["export", "--out", str(tmp_path)], "is a folder"),
    ]
    for argv, fragment in cases:
        assert main([*argv, "--checkpoint", str(tiny_run)]) == 2, argv
        _one_line_error(capsys, fragment)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_unwritable_out_folder_is_refused(tiny_run, image_tree, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert (
        main(
            [
                "extract",
                str(image_tree["gallery"]),
                "--checkpoint",
                str(tiny_run),
                "--out",
                str(locked / "g.safetensors"),
            ]
        )
        == 2
    )
    _one_line_error(capsys, "permission denied")


def test_cuda_device_without_cuda_is_a_one_line_error(tiny_run, image_tree, tmp_path, capsys):
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert (
        main(
            [
                "extract",
                str(image_tree["gallery"]),
                "--checkpoint",
                str(tiny_run),
                "--out",
                str(tmp_path / "g.safetensors"),
                "--device",
                "cuda",
            ]
        )
        == 2
    )
    _one_line_error(capsys, "--device cuda", "CUDA is not available")


def test_explain_alpha_outside_0_1_is_refused(tiny_run, image_tree, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(
            [
                "explain",
                str(image_tree["query"]),
                "--checkpoint",
                str(tiny_run),
                "--out",
                str(tmp_path / "c"),
                "--alpha",
                "5",
            ]
        )
    assert "--alpha: expected a number in [0, 1], got 5" in capsys.readouterr().err


def test_export_without_the_export_extra_says_what_to_install(tiny_run, tmp_path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real_find_spec(name, *a)
    )
    assert main(["export", "--checkpoint", str(tiny_run), "--out", str(tmp_path / "m.onnx")]) == 2
    _one_line_error(capsys, "needs onnxruntime", 'pip install "dcac[export]"')


def test_on_corrupt_skip_extracts_the_readable_images(tiny_run, image_tree, tmp_path, capsys):
    folder = tmp_path / "gallery"
    folder.mkdir()
    for image in sorted(image_tree["gallery"].iterdir())[:3]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "0009_c1s1_000001_00.jpg").write_bytes(b"broken")
    out = tmp_path / "g.safetensors"
    args = ["extract", str(folder), "--checkpoint", str(tiny_run), "--out", str(out), "--device", "cpu"]
    assert main(args) == 2
    _one_line_error(capsys, "0009_c1s1_000001_00.jpg")
    assert main([*args, "--on-corrupt", "skip"]) == 0
    assert "skipped 1 unreadable images" in capsys.readouterr().err
    with safe_open(str(out), "pt") as fh:
        assert fh.get_tensor("features").shape[0] == 3

    results = tmp_path / "search"
    assert (
        main(
            [
                "search",
                str(folder),
                "--gallery",
                str(folder),
                "--checkpoint",
                str(tiny_run),
                "--out",
                str(results),
                "--device",
                "cpu",
                "--on-corrupt",
                "skip",
            ]
        )
        == 0
    )
    assert (results / "results.json").is_file()


def test_an_all_zero_activation_map_is_reported(tmp_path, image_tree, run_factory, caplog):
    run = run_factory(tmp_path / "run")
    weights = {k: v.clone() for k, v in load_tensors(run / "reid_model.safetensors").items()}
    weights["classifier.weight"].zero_()  # every logit is 0 whatever the image: no gradient, no map
    save_tensors_atomic(weights, run / "reid_model.safetensors")
    with caplog.at_level(logging.WARNING, logger="dcac.inference.gradcam"):
        assert (
            main(
                [
                    "explain",
                    str(image_tree["query"]),
                    "--checkpoint",
                    str(run),
                    "--out",
                    str(tmp_path / "cams"),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
    assert "activation map is zero everywhere" in caplog.text and "0001_c3s1_000002_00" in caplog.text


def test_eval_on_corrupt_skip_skips_and_counts_unreadable_target_images(tiny_run, tmp_path, capsys):
    from dcac.demo.synthetic import write_synthetic

    write_synthetic(tmp_path / "data", domains=["synth_c"])
    broken = sorted((tmp_path / "data" / "synth_c" / "bounding_box_test").glob("*.jpg"))[-1]
    broken.write_bytes(b"")
    args = [
        "eval",
        "--checkpoint",
        str(tiny_run),
        "--target",
        "synth_c",
        "--root",
        str(tmp_path / "data"),
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    _one_line_error(capsys, broken.name)
    assert main([*args, "--on-corrupt", "skip", "--out", str(tmp_path / "m.json")]) == 0
    assert "skipped 1 unreadable images of synth_c" in capsys.readouterr().out
