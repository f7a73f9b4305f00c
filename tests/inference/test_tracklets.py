"""dcac.track on a tiny synthetic MOT sequence: two cameras, the same three people under other track ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import dcac.api as api
from dcac import track
from dcac.inference.mot import MOTFileError

FRAME_W, FRAME_H, PERSON_H, PERSON_W = 160, 96, 48, 24


def _write_camera(folder: Path, people: dict[int, int], draw_person, seed: int, frames: int = 4) -> Path:
    """``people``: track id → identity seed.  Each person walks right; one box sticks out of the frame."""
    (folder / "img1").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    lines = []
    for frame in range(1, frames + 1):
        canvas = Image.fromarray(rng.integers(90, 110, (FRAME_H, FRAME_W, 3), dtype=np.uint8))
        for slot, (track_id, identity) in enumerate(people.items()):
            left, top = 4 + 8 * frame + 46 * slot, 10 + 3 * slot
            canvas.paste(draw_person(identity, (PERSON_H, PERSON_W)), (left, top))
            lines.append(f"{frame},{track_id},{left},{top},{PERSON_W},{PERSON_H},1,1,1.0")
        canvas.save(folder / "img1" / f"{frame:06d}.jpg", quality=95)
    lines.append("1,-1,0,0,10,10,0.3,-1,-1,-1")  # a raw detection: no track
    lines.append(f"2,{next(iter(people))},{FRAME_W - 5},0,40,40,0,1,1.0")  # mostly outside, gt "ignore" flag 0
    (folder / "gt").mkdir()
    (folder / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def cameras(tmp_path_factory, draw_person):
    root = tmp_path_factory.mktemp("mot")
    cam1 = _write_camera(root / "cam1", {1: 101, 2: 202, 3: 303}, draw_person, seed=0)
    cam2 = _write_camera(root / "cam2", {7: 303, 8: 101, 9: 202}, draw_person, seed=1)
    return cam1, cam2


def test_tracklet_features_are_the_mean_of_the_crop_features(cameras, tiny_run):
    cam1, _ = cameras
    model = api.load(tiny_run)
    tracks = track.tracklet_features(model, cam1 / "gt" / "gt.txt", cam1 / "img1", min_conf=1)
    assert tracks.camera == "gt" and tracks.track_ids == [1, 2, 3] and tracks.num_crops == [4, 4, 4]
    # Brute force: crop each box by hand from its frame, extract, average, normalise.
    boxes = [b for b in track.read_mot(cam1 / "gt" / "gt.txt") if b.track_id == 2 and b.conf >= 1]
    crops = []
    for b in boxes:
        with Image.open(cam1 / "img1" / f"{b.frame:06d}.jpg") as frame:
            crops.append(
                frame.convert("RGB").crop((int(b.left), int(b.top), int(b.left + b.width), int(b.top + b.height)))
            )
    expected = F.normalize(model.extract(crops).mean(dim=0), dim=0)
    torch.testing.assert_close(tracks.features[1], expected, atol=1e-6, rtol=0)
    assert torch.allclose(tracks.features.norm(dim=1), torch.ones(3))


def test_cross_camera_search_links_the_same_people(cameras, tiny_run):
    cam1, cam2 = cameras
    model = api.load(tiny_run)
    a = track.tracklet_features(model, cam1 / "gt" / "gt.txt", cam1 / "img1", camera="cam1", min_conf=1)
    b = track.tracklet_features(model, cam2 / "gt" / "gt.txt", cam2 / "img1", camera="cam2", min_conf=1)
    matches = track.match_tracklets(a, b, topk=3)
    assert {m.query_track: m.gallery_tracks[0] for m in matches} == {1: 8, 2: 9, 3: 7}
    assert all(m.distances == sorted(m.distances) for m in matches)


def test_crop_limits_boxes_outside_the_frame_and_detections(cameras, tiny_run):
    cam1, _ = cameras
    model = api.load(tiny_run)
    limited = track.tracklet_features(model, cam1 / "gt" / "gt.txt", cam1 / "img1", max_crops_per_track=2)
    # Without the conf filter track 1 also has the box at the right border (clipped, still inside): 5 boxes, 2 kept.
    assert limited.num_crops == [2, 2, 2]
    boxes = track.read_mot(cam1 / "gt" / "gt.txt")
    feats = track.detection_features(model, boxes, cam1 / "img1")
    assert feats.shape == (len(boxes), 32) and torch.allclose(feats.norm(dim=1), torch.ones(len(boxes)))


def test_bad_mot_lines_and_missing_frames_are_named(tmp_path, tiny_run):
    bad = tmp_path / "bad.txt"
    bad.write_text("1,1,10,10,20,40,1\n2,1,ten,10,20,40,1\n")
    with pytest.raises(MOTFileError, match=r"bad.txt line 2"):
        track.read_mot(bad)
    good = tmp_path / "good.txt"
    good.write_text("1,1,10,10,20,40,1\n")
    with pytest.raises(FileNotFoundError, match="000001.jpg"):
        track.tracklet_features(api.load(tiny_run), good, tmp_path / "frames")
    only_dets = tmp_path / "det.txt"
    only_dets.write_text("1,-1,10,10,20,40,0.9\n")
    with pytest.raises(ValueError, match="no boxes with a track id"):
        track.tracklet_features(api.load(tiny_run), only_dets, tmp_path)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_non_finite_coordinates_name_the_file_and_line(tmp_path, value):
    mot = tmp_path / "res.txt"
    mot.write_text(f"1,1,10,10,20,40,1\n1,2,{value},10,20,40,1\n")
    with pytest.raises(MOTFileError, match=r"res.txt line 2: .*finite"):
        track.read_mot(mot)
    mot.write_text(f"{value},1,10,10,20,40,1\n")
    with pytest.raises(MOTFileError, match=r"res.txt line 1: .*finite"):
        track.read_mot(mot)


def test_every_box_outside_its_frame_names_the_file_and_line(cameras, tiny_run, tmp_path):
    cam1, _ = cameras
    outside = tmp_path / "outside.txt"
    outside.write_text(f"1,1,{FRAME_W + 10},0,20,40,1\n2,1,-50,-50,20,40,1\n")
    with pytest.raises(MOTFileError, match=r"outside.txt line 1: none of its 2 box\(es\) overlaps its frame"):
        track.tracklet_features(api.load(tiny_run), outside, cam1 / "img1")
