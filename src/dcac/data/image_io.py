"""Reading images with Pillow, and checking a whole dataset for unreadable files before training.

A corrupt file must surface as an error that names it (CLIP-ReID's loader retries such a file forever),
or, when the user asks for it, be skipped and counted.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from PIL import Image, ImageOps

from dcac.data.errors import CorruptImageError
from dcac.data.pixel_modes import rgb_from_mode
from dcac.data.records import ImageRecord

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def is_image_file(path: Path) -> bool:
    """An image by its suffix; macOS ``._*`` resource-fork files (left by copying from a Mac) are not images."""
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("._")


# PIL signals unreadable data with OSError (incl. UnidentifiedImageError and truncation), ValueError, SyntaxError,
# EOFError or struct.error depending on the format plugin; a header claiming more than twice
# Image.MAX_IMAGE_PIXELS pixels is refused before decoding, as DecompressionBombError (not an OSError).
_DECODING_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)


def read_rgb(path: str) -> Image.Image:
    """Fully decode the image at ``path`` with :func:`to_rgb`; raise :class:`CorruptImageError` naming it on failure."""
    try:
        image = Image.open(path)
    except _DECODING_ERRORS as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error
    with image:
        return to_rgb(image, path)


def to_rgb(image: Image.Image, name: str) -> Image.Image:
    """The one conversion every reader applies: EXIF orientation, then 8-bit RGB (see :mod:`dcac.data.pixel_modes`).

    Raises :class:`CorruptImageError` naming ``name`` for data that does not decode, an empty image, or pixels
    without a defined 8-bit form.
    """
    if image.width == 0 or image.height == 0:
        raise CorruptImageError(f"cannot use {name}: empty image ({image.width}×{image.height} pixels)")
    try:
        upright = ImageOps.exif_transpose(image)  # decodes the pixels
    except _DECODING_ERRORS as error:
        raise CorruptImageError(f"cannot read image {name}: {error}") from error
    return rgb_from_mode(upright, name)


def _decoding_error(path: str) -> CorruptImageError | None:
    try:
        read_rgb(path)
    except CorruptImageError as error:
        return error
    return None


def _decoding_errors(paths: Sequence[str], num_workers: int) -> list[CorruptImageError | None]:
    if num_workers > 1:
        with ThreadPoolExecutor(max_workers=num_workers) as pool:
            return list(pool.map(_decoding_error, paths))
    return [_decoding_error(p) for p in paths]


def verify_images(
    records: Sequence[ImageRecord], on_corrupt: Literal["raise", "skip"] = "raise", *, num_workers: int = 1
) -> tuple[list[ImageRecord], int]:
    """Decode every image once; return the readable records (in order) and how many were skipped.

    ``on_corrupt="raise"`` raises :class:`CorruptImageError` naming the first unreadable file;
    ``"skip"`` drops unreadable files and counts them. Decoding is the only reliable check (a truncated
    JPEG passes ``Image.verify``). ``num_workers > 1`` decodes in threads: Pillow releases the GIL while
    decoding.
    """
    kept = readable_files([r.path for r in records], on_corrupt, num_workers=num_workers)[0]
    readable = set(kept)
    records_kept = [r for r in records if r.path in readable]
    return records_kept, len(records) - len(records_kept)


def readable_files(
    paths: Sequence[str | Path], on_corrupt: Literal["raise", "skip"] = "raise", *, num_workers: int = 1
) -> tuple[list, int]:
    """:func:`verify_images` for plain paths: the readable ones (in order, as given) and how many were skipped."""
    if on_corrupt not in ("raise", "skip"):
        raise ValueError(f"on_corrupt must be 'raise' or 'skip', got {on_corrupt!r}")
    errors = _decoding_errors([str(p) for p in paths], num_workers)
    first_error = next((e for e in errors if e is not None), None)
    if on_corrupt == "raise" and first_error is not None:
        raise first_error
    kept = [p for p, error in zip(paths, errors) if error is None]
    return kept, len(paths) - len(kept)
