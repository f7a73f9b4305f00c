"""Every Pillow pixel mode to 8-bit RGB, or a refusal that names the file and the mode.

Pillow's ``convert("RGB")`` clips 16- and 32-bit integer pixels to 0..255 instead of scaling them, so a 16-bit
grey PNG (mode ``I;16``) becomes an all-white picture; those modes are scaled here (65535 -> 255). Float
pixels (mode ``F``) have no agreed range (0..1? 0..255?), so guessing would silently change the picture:
they are refused.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from dcac.data.errors import CorruptImageError

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Modes Pillow cannot turn into RGB in one step, and the mode that gets them there.
_VIA = {"La": "LA"}
_REFUSED = {"F": "32-bit float pixels have no defined 8-bit range; convert the image to 8 or 16 bits"}


def _scaled_16_bit(image: Image.Image, name: str) -> Image.Image:
    values = np.asarray(image).astype(np.int64)
    if values.min() < 0 or values.max() > 65535:
        raise CorruptImageError(
            f"cannot use {name}: mode {image.mode} pixels range {values.min()}..{values.max()}, "
            "expected 0..65535 (16 bits)"
        )
    # Rounding values/257 maps 0..65535 onto 0..255 with both ends exact (257 * 255 = 65535).
    grey = Image.fromarray(np.round(values / 257).astype(np.uint8))
    return grey.convert("RGB")


def rgb_from_mode(image: Image.Image, name: str) -> Image.Image:
    """``image`` as 8-bit RGB: 16/32-bit integer grey scaled from 0..65535, other modes converted by Pillow.

    An RGB ``image`` is returned as it is (the caller's copy, already decoded).
    """
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES or image.mode == "I":
        return _scaled_16_bit(image, name)
    if image.mode in _REFUSED:
        raise CorruptImageError(f"cannot use {name}: mode {image.mode}: {_REFUSED[image.mode]}")
    if image.mode not in Image.MODES:
        raise CorruptImageError(f"cannot use {name}: pixel mode {image.mode!r} has no 8-bit RGB conversion")
    if image.mode in _VIA:
        image = image.convert(_VIA[image.mode])
    return image.convert("RGB")
