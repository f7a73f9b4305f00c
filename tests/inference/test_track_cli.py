"""``dcac track``: two synthetic cameras (the same three people under other track ids) -> features, matches, page."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_tracklets import PERSON_H, PERSON_W, _write_camera

import dcac.api as api
from dcac import track
from dcac.cli import main
from dcac.inference.feature_store import load_features
from dcac.inference.track_results import _nearest_other_tracks

SAME_PERSON = {"cam1/track_1.jpg": "cam2/track_8.jpg", "cam1/track_2.jpg": "cam2/track_9.jpg"}


@pytest.fixture(scope="module")
def cameras(tmp_path_factory, draw_person):
    root = tmp_path_factory.mktemp("seqs")
    cam1 = _write_camera(root / "cam1", {1: 101, 2: 202, 3: 303}, draw_person, seed=0)
    cam2 = _write_camera(root / "cam2", {7: 303, 8: 101, 9: 202}, draw_person, seed=1)
    return cam1, cam2


def _track(cameras, tiny_run, out, *extra):
    argv = ["track", "--checkpoint", str(tiny_run), "--device", "cpu", "--out", str(out), "--min-conf", "1"]
    for cam in cameras:
        argv += ["--camera", str(cam / "gt" / "gt.txt"), str(cam / "img1")]
    return main(argv + list(extra))


def test_track_writes_features_thumbnails_and_cross_camera_matches(cameras, tiny_run, tmp_path, capsys):
    out = tmp_path / "tracks"
    assert _track(cameras, tiny_run, out, "--topk", "2") == 0
    assert "6 tracks of 2 camera(s)" in capsys.readouterr().out
    stored = load_features(out / "tracks.safetensors")
    assert stored.names == [f"cam1/track_{t}.jpg" for t in (1, 2, 3)] + [f"cam2/track_{t}.jpg" for t in (7, 8, 9)]
    model = api.load(tiny_run)
    expected = track.tracklet_features(model, cameras[0] / "gt" / "gt.txt", cameras[0] / "img1", min_conf=1)
    torch.testing.assert_close(stored.features[:3], expected.features)
    assert stored.weights_sha256 == model.weights_sha256
    for path in stored.paths():
        with Image.open(path) as thumbnail:
            assert thumbnail.size == (PERSON_W, PERSON_H)
    results = json.loads((out / "results.json").read_text())
    nearest = {}
    for query in results["queries"]:
        own = query["query"].split("/")[-2]
        assert len(query["results"]) == 2 and all(f"/{own}/" not in r["path"] for r in query["results"])
        nearest[query["query"].split("thumbnails/")[1]] = query["results"][0]["path"].split("thumbnails/")[1]
    assert {q: nearest[q] for q in SAME_PERSON} == SAME_PERSON
    assert (out / "results.html").read_text().count("<img") >= 6 * 3


def test_search_and_index_read_the_tracks_file(cameras, tiny_run, tmp_path):
    out = tmp_path / "tracks"
    assert _track(cameras, tiny_run, out) == 0
    query = out / "thumbnails" / "cam1" / "track_1.jpg"
    argv = ["search", str(query), "--gallery", str(out / "tracks.safetensors"), "--checkpoint", str(tiny_run)]
    assert main(argv + ["--device", "cpu", "--topk", "6", "--out", str(tmp_path / "search")]) == 0
    ranked = json.loads((tmp_path / "search" / "results.json").read_text())["queries"][0]["results"]
    # The thumbnail's own track and the same person's track in the other camera come first.
    assert {r["path"] for r in ranked[:2]} == {str(query), str(out / "thumbnails" / "cam2" / "track_8.jpg")}
    assert main(["index", str(out / "tracks.safetensors"), "--out", str(tmp_path / "tracks.index")]) == 0


def test_a_video_gives_the_frame_folders_features(cameras, tiny_run, tmp_path):
    av = pytest.importorskip("av")
    video = tmp_path / "cam1.mkv"
    frames = sorted((cameras[0] / "img1").iterdir())
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=10)  # lossless: decoded frames equal the frame files' pixels
        stream.width, stream.height, stream.pix_fmt = *Image.open(frames[0]).size, "bgr0"
        for frame in frames:
            pixels = np.asarray(Image.open(frame).convert("RGB"))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    model = api.load(tiny_run)
    mot = cameras[0] / "gt" / "gt.txt"
    from_video = track.tracklet_features(model, mot, video, min_conf=1)
    from_frames = track.tracklet_features(model, mot, cameras[0] / "img1", min_conf=1)
    torch.testing.assert_close(from_video.features, from_frames.features)
    longer = tmp_path / "longer.txt"
    longer.write_text("9,1,10,10,20,40,1\n")
    with pytest.raises(ValueError, match=r"cam1.mkv has 4 frames, but its MOT file names frame 9"):
        track.tracklet_features(model, longer, video)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ValueError, match=r"cannot read the video .*broken.mp4"):
        track.tracklet_features(model, mot, broken)


def test_bad_inputs_are_one_line_errors(cameras, tiny_run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20,40,1\n2,1,nan,10,20,40,1\n")
    argv = ["track", "--checkpoint", str(tiny_run), "--device", "cpu", "--out", str(tmp_path / "o")]
    assert main(argv + ["--camera", str(bad), str(cameras[0] / "img1")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("dcac track: error: ") and "bad.txt line 2" in err[0] and len(err) == 2
    twice = ["--camera", str(cameras[0] / "gt" / "gt.txt"), str(cameras[0] / "img1")] * 2
    assert main(argv + twice) == 2
    assert "named 'cam1'" in capsys.readouterr().err
    outside = tmp_path / "outside.txt"
    outside.write_text("1,1,1000,1000,20,40,1\n")
    assert main(argv + ["--camera", str(outside), str(cameras[0] / "img1")]) == 2
    assert "outside.txt line 1: none of its 1 box(es) overlaps its frame" in capsys.readouterr().err


def test_each_track_is_ranked_against_the_other_cameras_only():
    features = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    distances, indices = _nearest_other_tracks(features, ["a", "a", "a", "a", "b", "c"], topk=5)
    assert distances.shape == (6, 5)  # a track of camera a has 2 candidates, of b or c 5: padded with inf
    assert sorted(indices[0, :2].tolist()) == [4, 5] and torch.isinf(distances[:4, 2:]).all()
    assert torch.isfinite(distances[4:]).all() and set(indices[4].tolist()) == {0, 1, 2, 3, 5}
    _, alone = _nearest_other_tracks(features[:3], ["a", "a", "a"], topk=5)
    assert [sorted(row) for row in alone.tolist()] == [[1, 2], [0, 2], [0, 1]]  # one camera: its other tracks
