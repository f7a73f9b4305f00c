"""MOTChallenge-format box files and the person crops they point at.

One box per line, comma-separated: ``frame, id, left, top, width, height, conf, ...`` (1-based frame numbers,
pixel boxes; MOT17/MOT20 ``gt.txt``, ``det.txt`` with id ``-1``, and trackers' result files all share these
first seven columns).  Frames are image files in one folder named by frame number (MOTChallenge:
``img1/000001.jpg``, pattern ``{frame:06d}.jpg``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dcac.inference.image_inputs import load_rgb

DEFAULT_FRAME_PATTERN = "{frame:06d}.jpg"


class MOTFileError(ValueError):
    """A line of a MOT file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class MOTBox:
    frame: int
    track_id: int  # -1 for raw detections
    left: float
    top: float
    width: float
    height: float
    conf: float

    def pixel_box(self, image_width: int, image_height: int) -> tuple[int, int, int, int] | None:
        """``(x1, y1, x2, y2)`` clipped to the image, or ``None`` when nothing of the box is inside it."""
        x1, y1 = max(0, round(self.left)), max(0, round(self.top))
        x2, y2 = min(image_width, round(self.left + self.width)), min(image_height, round(self.top + self.height))
        return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def read_mot(path: str | Path, *, min_conf: float | None = None) -> list[MOTBox]:
    """The boxes of a MOT file in file order; with ``min_conf``, those whose 7th column is at least it
    (for ``gt.txt`` that column is the 0/1 "consider" flag, for detections the detector's score)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MOT file not found: {path}")
    boxes = []
    with path.open(newline="") as handle:
        for line_no, row in enumerate(csv.reader(handle), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                frame, track_id = int(float(row[0])), int(float(row[1]))
                left, top, width, height, conf = (float(v) for v in row[2:7])
            except (ValueError, IndexError) as err:
                raise MOTFileError(
                    f"{path} line {line_no}: expected 'frame, id, left, top, width, height, conf, ...', got {row!r}"
                ) from err
            if min_conf is None or conf >= min_conf:
                boxes.append(MOTBox(frame, track_id, left, top, width, height, conf))
    return boxes


def iter_crops(
    boxes: Sequence[MOTBox], frames_dir: str | Path, *, frame_pattern: str = DEFAULT_FRAME_PATTERN
) -> Iterator[tuple[int, Image.Image]]:
    """``(index into boxes, RGB crop)`` for every box that overlaps its frame, reading each frame once."""
    frames_dir = Path(frames_dir)
    by_frame: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        by_frame.setdefault(box.frame, []).append(index)
    for frame in sorted(by_frame):
        image = load_rgb(frames_dir / frame_pattern.format(frame=frame))
        for index in by_frame[frame]:
            pixels = boxes[index].pixel_box(image.width, image.height)
            if pixels is not None:
                yield index, image.crop(pixels)
