"""Frames of a video file, by MOT frame number (1-based: the video's first frame is frame 1).

Decoding uses PyAV (FFmpeg's libraries, ``pip install "dcac[video]"``), imported only when a video is read.
A video is decoded once, front to back; only the frames asked for are converted to images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


class VideoError(ValueError):
    """A video that cannot be read, or that has fewer frames than its MOT file names; the message names it."""


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _open(path: Path):
    try:
        import av
    except ImportError:
        raise VideoError(f'reading the video {path} needs PyAV: pip install "dcac[video]"') from None
    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    try:
        return av.open(str(path))
    except av.FFmpegError as err:
        raise VideoError(f"cannot read the video {path}: {err}") from None


def video_frames(path: str | Path, frames: Iterable[int]) -> Iterator[tuple[int, Image.Image]]:
    """``(frame number, RGB image)`` for each wanted frame, in increasing frame order."""
    path = Path(path)
    wanted = sorted(set(frames))
    if not wanted:
        return
    with _open(path) as container:
        if not container.streams.video:
            raise VideoError(f"{path} has no video stream")
        position = number = 0
        for number, frame in enumerate(container.decode(video=0), start=1):
            if number == wanted[position]:
                yield number, frame.to_image().convert("RGB")
                position += 1
                if position == len(wanted):
                    return
    raise VideoError(f"{path} has {number} frames, but its MOT file names frame {wanted[position]}")
