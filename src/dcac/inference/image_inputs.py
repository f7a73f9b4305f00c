"""Turning what a user hands to ``extract`` (a folder, file paths, PIL images, arrays) into model input.

A folder is read recursively in sorted path order (``find_images``), so the row order of the returned
features is reproducible and the same as the file names a CLI writes next to them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dcac.data.errors import CorruptImageError
from dcac.data.image_io import IMAGE_SUFFIXES, is_image_file, read_rgb, to_rgb

ImageLike = str | Path | Image.Image | np.ndarray


class ImageInputError(ValueError):
    """An input that is not a readable image or image folder; the message names it."""


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if is_image_file(p) and p.is_file())
    if not files:
        raise ImageInputError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found under {folder}")
    return files


def expand_inputs(inputs: ImageLike | Sequence[ImageLike]) -> list[ImageLike]:
    """One flat list of images: a folder becomes its sorted image files; anything else is kept."""
    if isinstance(inputs, (str, Path)):
        path = Path(inputs)
        return list(find_images(path)) if path.is_dir() else [path]
    if isinstance(inputs, (Image.Image, np.ndarray)):
        return [inputs]
    items: list[ImageLike] = []
    for item in inputs:
        if isinstance(item, (str, Path)) and Path(item).is_dir():
            items.extend(find_images(item))
        else:
            items.append(item)
    return items


def check_single_image(image: object) -> None:
    """``dcac.compare`` compares one image with one image: a folder or a list is refused, never silently cut
    down to its first image."""
    if isinstance(image, (str, Path)) and Path(image).is_dir():
        raise ImageInputError(
            f"dcac.compare compares two images, but {image} is a folder: for one image against many, "
            "use model.extract(folder) and dcac.rank"
        )
    if not isinstance(image, (str, Path, Image.Image, np.ndarray)):
        raise ImageInputError(
            f"dcac.compare takes one image each (a path, a PIL image or an H×W×3 array), got a "
            f"{type(image).__name__}: for several images use model.extract and dcac.rank"
        )


def load_rgb(image: ImageLike) -> Image.Image:
    """An RGB PIL image from a path, a PIL image or an ``H×W×3`` uint8 array, decoded as training decodes
    (``dcac.data.image_io.to_rgb``: EXIF orientation, any Pillow mode to 8-bit RGB, empty images refused)."""
    try:
        if isinstance(image, (str, Path)):
            if not Path(image).is_file():
                raise FileNotFoundError(f"image file not found: {image}")
            return read_rgb(str(image))
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ImageInputError(
                    f"an image array must be H×W×3 uint8 (RGB), got shape {image.shape} {image.dtype}"
                )
            return to_rgb(Image.fromarray(image, mode="RGB"), f"an image array of shape {image.shape}")
        if isinstance(image, Image.Image):
            name = getattr(image, "filename", "") or f"an in-memory {image.width}×{image.height} {image.mode} image"
            return to_rgb(image, name)
    except CorruptImageError as err:
        raise ImageInputError(str(err)) from err
    raise ImageInputError(
        f"cannot use {type(image).__name__} as an image: expected a path, a PIL image or an H×W×3 uint8 array"
    )
