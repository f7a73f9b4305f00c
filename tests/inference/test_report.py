"""write_report: metrics table, CMC and training plots, ranked lists, rendered in headless Chromium."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dcac.data.records import ImageRecord
from dcac.inference.image_inputs import find_images
from dcac.inference.ranked_list import sample_ranked_queries
from dcac.inference.report import write_report
from dcac.inference.training_log import read_training_log


def _write_log(path: Path) -> None:
    lines = [
        json.dumps(
            {
                "epoch": s // 10,
                "step": s + 1,
                "loss": 4.0 - 0.1 * s,
                "loss_id": 3.0 - 0.05 * s,
                "loss_pcl": 1.0,
                "acc": s / 30,
            }
        )
        for s in range(30)
    ]
    lines.insert(
        12, json.dumps({"event": "eval", "epoch": 1, "synth_c": {"mAP": 10.5, "rank1": 20.25, "cmc": [0.2, 0.3]}})
    )
    lines.append(json.dumps({"event": "eval", "epoch": 2, "target": "synth_d", "mAP": 5.0, "time": 1.0}))
    lines.append(json.dumps({"epoch": 3, "step": 31, "loss_diff": 0.5}))
    lines.append('{"epoch": 3, "st')  # a line torn by a crash while training appended to the log
    path.write_text("\n".join(lines) + "\n")


def _records(folder: Path) -> list[ImageRecord]:
    return [ImageRecord(str(p), int(p.name[:4]), int(p.name[6]) - 1, "synth") for p in find_images(folder)]


def _metrics() -> dict:
    cmc = [min(1.0, 0.4 + 0.02 * r) for r in range(50)]
    return {
        "synth_c": {
            "mAP": 31.234,
            "rank1": 40.0,
            "rank5": 48.0,
            "rank10": 58.0,
            "mINP": 9.5,
            "num_valid_queries": 2,
            "cmc": cmc,
        },
        "synth_d": {"mAP": 12.0, "rank1": 22.5, "mINP": 1.0, "num_valid_queries": 7, "cmc": [0.225] + [0.5] * 49},
    }


def test_training_log_parsing(tmp_path):
    _write_log(tmp_path / "log.jsonl")
    log = read_training_log(tmp_path / "log.jsonl")
    assert log.steps == [float(s) for s in range(1, 32)] and log.step_label == "step"
    assert sorted(log.losses) == ["loss", "loss_diff", "loss_id", "loss_pcl"]
    assert log.losses["loss"][:2] == [4.0, 3.9] and log.losses["loss"][-1] is None
    assert log.losses["loss_diff"][-1] == 0.5 and log.accuracy[29] == pytest.approx(29 / 30)
    assert log.evaluations == [
        {"epoch": 1, "synth_c/mAP": 10.5, "synth_c/rank1": 20.25},
        {"epoch": 2, "target": "synth_d", "mAP": 5.0},
    ]
    assert log.skipped_lines == 1
    assert read_training_log(tmp_path / "absent.jsonl").steps == []


def test_sample_ranked_queries_follows_the_evaluation_rule(image_tree):
    gallery = _records(image_tree["gallery"])
    # Queries from the gallery itself: their own image (same id, same camera) must be excluded.
    query = gallery[::2]
    gallery_feats = F.normalize(torch.randn(len(gallery), 8, generator=torch.Generator().manual_seed(0)), dim=1)
    query_feats = gallery_feats[::2]
    ranked = sample_ranked_queries(query_feats, gallery_feats, query, gallery, num_queries=3, topk=10, seed=1)
    assert len(ranked) == 3
    for q in ranked:
        qi = next(i for i, r in enumerate(query) if r.path == q.path)
        allowed = [
            g for g, r in enumerate(gallery) if not (r.pid == q.pid and r.camid + 1 == q.camid)
        ]  # q.camid: 1-based
        dist = (gallery_feats[allowed] - query_feats[qi]).pow(2).sum(1)
        order = dist.argsort()
        assert [e.path for e in q.entries] == [gallery[allowed[i]].path for i in order.tolist()]
        assert [e.distance for e in q.entries] == pytest.approx(dist[order].tolist(), abs=1e-5)
        assert all(q.is_match(e) == (e.pid == q.pid) for e in q.entries)
    again = sample_ranked_queries(query_feats, gallery_feats, query, gallery, num_queries=3, topk=10, seed=1)
    assert [q.path for q in again] == [q.path for q in ranked]


def _report(tmp_path: Path, image_tree) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_info.json").write_text(json.dumps({"num_ids": 8, "sources": ["synth_a", "synth_b"]}))
    _write_log(run / "log.jsonl")
    gallery = _records(image_tree["gallery"])
    feats = F.normalize(torch.randn(len(gallery), 8, generator=torch.Generator().manual_seed(2)), dim=1)
    samples = {"synth_c": sample_ranked_queries(feats, feats, gallery, gallery, num_queries=2, topk=4)}
    return write_report(run, _metrics(), ranked_samples=samples)


def test_report_contents(tmp_path, image_tree):
    path = _report(tmp_path, image_tree)
    assert path == tmp_path / "run" / "report.html"
    page = path.read_text()
    header = re.search(r"<tr><th>target</th>(.*?)</tr>", page).group(1)
    assert re.findall(r"<th>(.*?)</th>", header) == ["mAP", "rank1", "rank5", "rank10", "mINP", "num_valid_queries"]
    assert "<td>synth_c</td><td>31.23</td><td>40.00</td><td>48.00</td><td>58.00</td><td>9.50</td><td>2</td>" in page
    assert "<td>synth_d</td><td>12.00</td><td>22.50</td><td></td><td></td><td>1.00</td><td>7</td>" in page
    assert "synth_c/mAP" in page and "1 unreadable line(s)" in page and "synth_a" in page
    # Two plots and 2 × (1 + 4) thumbnails, every one embedded in the page.
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 2
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == 10
    for name in ("cmc.png", "training_curves.png"):
        with Image.open(path.parent / "plots" / name) as plot:
            assert plot.format == "PNG" and plot.width > 300 and plot.height > 200
    # Rewritten after every evaluation: a second call replaces the page.
    write_report(path.parent, {"synth_c": {"mAP": 50.0}})
    assert "<td>50.00</td>" in path.read_text() and "31.23" not in path.read_text()


def test_report_without_log_or_cmc(tmp_path):
    path = write_report(tmp_path / "fresh", {})
    page = path.read_text()
    assert "no evaluation yet" in page and "<img" not in page


_MARKER_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
});
</script>
</body>"""


def test_report_renders_in_headless_chromium(tmp_path, image_tree, chromium):
    path = _report(tmp_path, image_tree)
    probe = path.with_name("probe.html")
    probe.write_text(path.read_text().replace("</body>", _MARKER_SCRIPT))
    assert 'data-images="12/12"' in chromium.dump_dom(probe)
    shot = chromium.screenshot(path, tmp_path / "shot.png", 1000, 1400)
    with Image.open(io.BytesIO(shot.read_bytes())) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert image.size == (1000, 1400) and len(colours) > 50  # the plots and thumbnails are drawn, not a blank page


def test_captions_show_the_camera_number_of_the_file_name(tmp_path, draw_person):
    # Records count cameras from 0 (c2 -> camid 1); a page must say what the file name says: "cam 2".
    names = ["0067_c2s1_000001_00.jpg", "0067_c5s1_000002_00.jpg", "0068_c1s1_000003_00.jpg"]
    for seed, name in enumerate(names):
        draw_person(seed).save(tmp_path / name)
    records = [ImageRecord(str(tmp_path / n), int(n[:4]), int(n[6]) - 1, "synth") for n in names]
    feats = F.normalize(torch.randn(3, 8, generator=torch.Generator().manual_seed(0)), dim=1)
    ranked = sample_ranked_queries(feats[:1], feats, records[:1], records, num_queries=1, topk=2)
    page = write_report(tmp_path / "run", {}, ranked_samples={"synth": ranked}).read_text()
    assert "query<br>id 67 cam 2<" in page
    assert "id 67 cam 5<" in page and "id 68 cam 1<" in page
    assert "cam 0" not in page and "cam 4" not in page
