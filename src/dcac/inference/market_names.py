"""Identity and camera from Market-1501-style file names (``0002_c1s1_000451_03.jpg`` → id 2, camera 1).

Market-1501, DukeMTMC-reID, CUHK03-NP and the Market-style MSMT17 re-packaging all name images
``PPPP_cC...``; id ``-1`` marks distractors.  Knowing the ids lets a ranked list colour true and false
matches; for any other naming the ids are simply unknown.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

_MARKET_NAME = re.compile(r"^(-?\d+)_c(\d+)")


class PersonCamera(NamedTuple):
    pid: int
    camid: int


def parse_market_name(path: str | Path) -> PersonCamera | None:
    """``(pid, camid)`` from a Market-style file name, or ``None`` when the name does not follow it."""
    match = _MARKET_NAME.match(Path(path).name)
    if match is None:
        return None
    return PersonCamera(int(match.group(1)), int(match.group(2)))
