"""Errors raised by the data layer.

Each error names the file or folder at fault and, for layout problems, the layout that was expected, so a
user with a mis-arranged dataset knows what to move where (a common complaint about other Re-ID toolkits).
"""

from __future__ import annotations


class DatasetLayoutError(FileNotFoundError):
    """A dataset folder, split folder or list file is missing or arranged differently than expected."""


class EmptySplitError(DatasetLayoutError):
    """A split that must hold images (train, query or gallery) holds none."""


class ImageNameError(ValueError):
    """An image file name (or a list-file line) does not follow the dataset's naming convention."""


class CorruptImageError(OSError):
    """An image file exists in the dataset but cannot be read or decoded."""


class DuplicateListingError(ValueError):
    """A dataset list names one file as two different identities (or cameras): the list contradicts itself."""
