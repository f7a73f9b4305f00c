"""MOTChallenge-format box files and the person crops they point at.

One box per line, comma-separated: ``frame, id, left, top, width, height, conf, ...`` (1-based frame numbers,
pixel boxes; MOT17/MOT20 ``gt.txt``, ``det.txt`` with id ``-1``, and trackers' result files all share these
first seven columns).  Frames are image files in one folder named by frame number (MOTChallenge:
``img1/000001.jpg``, pattern ``{frame:06d}.jpg``), or a video file whose first frame is frame 1.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from dcac.inference.image_inputs import load_rgb
from dcac.inference.video_frames import is_video_file, video_frames

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
    line: int = 0  # line number in its MOT file (0: not read from a file), for error messages

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
            box = _parse_row(row, f"{path} line {line_no}", line_no)
            if min_conf is None or box.conf >= min_conf:
                boxes.append(box)
    return boxes


def _parse_row(row: list[str], where: str, line_no: int) -> MOTBox:
    try:
        values = [float(v) for v in row[:7]]
    except ValueError as err:
        raise MOTFileError(f"{where}: expected 'frame, id, left, top, width, height, conf, ...', got {row!r}") from err
    if len(values) < 7:
        raise MOTFileError(f"{where}: expected at least 7 comma-separated columns, got {len(row)}: {row!r}")
    # float() accepts 'nan' and 'inf': a box made of them has no pixels, and int() of them fails obscurely later.
    if not all(math.isfinite(v) for v in values):
        raise MOTFileError(f"{where}: every one of the first 7 columns must be a finite number, got {row[:7]!r}")
    frame, track_id, left, top, width, height, conf = values
    return MOTBox(int(frame), int(track_id), left, top, width, height, conf, line_no)


def no_box_inside(mot_file: str | Path, boxes: Sequence[MOTBox], frames_dir: str | Path) -> MOTFileError:
    """The error for boxes none of which overlaps its frame: it names the file and the first box's line."""
    first = boxes[0]
    return MOTFileError(
        f"{mot_file} line {first.line}: none of its {len(boxes)} box(es) overlaps its frame in {frames_dir} "
        f"(this one: left {first.left:g}, top {first.top:g}, width {first.width:g}, height {first.height:g} "
        f"in frame {first.frame}); are the frames those of this file, in pixels?"
    )


def iter_crops(
    boxes: Sequence[MOTBox], frames_dir: str | Path, *, frame_pattern: str = DEFAULT_FRAME_PATTERN
) -> Iterator[tuple[int, Image.Image]]:
    """``(index into boxes, RGB crop)`` for every box that overlaps its frame, reading each frame once.

    ``frames_dir`` is a folder of frame images named by ``frame_pattern``, or a video file."""
    frames_dir = Path(frames_dir)
    by_frame: dict[int, list[int]] = {}
    for index, box in enumerate(boxes):
        by_frame.setdefault(box.frame, []).append(index)
    if is_video_file(frames_dir):
        frames = video_frames(frames_dir, by_frame)
    else:
        frames = ((frame, load_rgb(frames_dir / frame_pattern.format(frame=frame))) for frame in sorted(by_frame))
    for frame, image in frames:
        for index in by_frame[frame]:
            pixels = boxes[index].pixel_box(image.width, image.height)
            if pixels is not None:
                yield index, image.crop(pixels)
