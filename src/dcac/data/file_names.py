"""File names that are not UTF-8: a legal Linux name may hold any bytes, which Python keeps as surrogate
escapes (``os.fsdecode``). They open files as they are, but cannot be written into UTF-8 text (a page, a
message) until made :func:`printable`."""

from __future__ import annotations


def printable(text: str) -> str:
    """``text`` as valid Unicode, each byte of a file name that is not UTF-8 shown as ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that no file name produced (e.g. read from JSON): shown escaped
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def has_undecodable_bytes(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (surrogate escapes)."""
    return any("\udc80" <= char <= "\udcff" for char in text)
