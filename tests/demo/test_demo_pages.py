"""The pages ``dcac demo`` writes, rendered in headless Chromium: the comparison page (both arms, the paired
intervals and verdicts, CMC curves really drawn) and each arm's report, from a real two-seed, one-epoch demo."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dcac.demo.run import ARMS, run_demo

#: Injected before ``</body>`` of a copy of the page: once everything has loaded, the page states how many of its
#: images decoded, and per <img alt="CMC"> how many pixel columns of the plot hold each arm's line colour
#: (matplotlib's C0 and C1, the arms' order), counted on a canvas the browser drew the image into.
_PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
  document.body.setAttribute("data-images", loaded + "/" + images.length);
  const cmc = images.find((img) => img.alt === "CMC");
  if (!cmc) return;
  const canvas = document.createElement("canvas");
  canvas.width = cmc.naturalWidth;
  canvas.height = cmc.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(cmc, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const colours = [[31, 119, 180], [255, 127, 14]];
  const columns = colours.map(() => new Set());
  for (let i = 0; i < pixels.length; i += 4) {
    colours.forEach((c, k) => {
      const d = Math.abs(pixels[i] - c[0]) + Math.abs(pixels[i + 1] - c[1]) + Math.abs(pixels[i + 2] - c[2]);
      if (d < 40) columns[k].add((i / 4) % canvas.width);
    });
  }
  document.body.setAttribute("data-cmc-columns", columns.map((s) => s.size).join(","));
  document.body.setAttribute("data-cmc-width", String(canvas.width));
});
</script>
</body>"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    """The smallest demo that has intervals: two seeds, one epoch each (the demo's data sizes are fixed)."""
    out = tmp_path_factory.mktemp("demo")
    return out, run_demo(out, epochs=1, seeds=2)


def _render(chromium, page: Path, shot: Path) -> tuple[str, Image.Image]:
    """The rendered DOM of ``page`` with the probe script, and a 1200 x 1600 screenshot of the page as written."""
    probe = page.with_name(f"probe_{page.name}")
    probe.write_text(page.read_text().replace("</body>", _PROBE))
    dom = chromium.dump_dom(probe)
    probe.unlink()
    with Image.open(chromium.screenshot(page, shot, 1200, 1600)) as image:
        return dom, image.convert("RGB")


def _assert_not_blank(image: Image.Image) -> None:
    assert image.size == (1200, 1600)
    assert ImageStat.Stat(image.convert("L")).var[0] > 100, "the screenshot is (nearly) one colour"
    assert len(image.getcolors(maxcolors=1 << 20)) > 50  # text, table and plots drawn, not a blank page


def test_comparison_page_renders_both_arms_intervals_and_cmc_curves(demo, chromium, tmp_path):
    out, summary = demo
    dom, shot = _render(chromium, out / "comparison.html", tmp_path / "comparison.png")
    assert 'data-images="2/2"' in dom  # the CMC plot and the mechanism plot decoded
    for arm in ("baseline", "dcac"):
        row = re.search(rf"<tr><td>{re.escape(ARMS[arm][0])}</td>(.*?)</tr>", dom)
        assert row, f"no row for {arm} in the rendered metrics table"
        mean, std = re.search(r"<td>(.*?) ± (.*?)</td>", row.group(1)).groups()  # mAP, the first column
        assert float(mean) == pytest.approx(summary["mean"][arm]["mAP"], abs=0.051)
        assert float(std) == pytest.approx(summary["std"][arm]["mAP"], abs=0.051)
    for metric in ("mAP", "R1"):
        difference = summary["paired"]["dcac"]["mAP" if metric == "mAP" else "rank1"]
        interval = f"95 % t-interval {difference['low']:+.1f} .. {difference['high']:+.1f}"
        line = re.search(rf"<li>DCAC - Baseline, {metric}: [^<]*</li>", dom).group(0)
        assert interval in line
        assert re.search(r"DCAC (ahead of|behind|not distinguishable from) the Baseline at 2 seeds</li>", line)
    columns = re.search(r'data-cmc-columns="(\d+),(\d+)"', dom)
    width = int(re.search(r'data-cmc-width="(\d+)"', dom).group(1))
    # Each arm's curve spans the plot's ranks 1..20; its legend entry alone covers ~30 columns.
    assert columns and min(int(columns.group(1)), int(columns.group(2))) > width // 3, (columns, width)
    _assert_not_blank(shot)


@pytest.mark.parametrize("arm", ["baseline", "dcac"])
def test_each_arms_report_renders(demo, chromium, tmp_path, arm):
    out, summary = demo
    dom, shot = _render(chromium, out / arm / "report.html", tmp_path / f"{arm}.png")
    loaded, total = re.search(r'data-images="(\d+)/(\d+)"', dom).groups()
    assert loaded == total and int(total) >= 3  # CMC, training curves, identity information, ranked lists
    assert f"{summary['per_seed'][0][arm]['mAP']:.2f}" in dom
    _assert_not_blank(shot)
