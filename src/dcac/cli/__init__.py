"""The ``dcac`` command line: ``main`` builds the parser and reports user errors in one line; each command
group is one module (``evaluate``: eval and calibrate, ``data``: the dataset tools, ``inference``: using a
trained run, ``official``: importing the official code's checkpoints); ``arguments`` holds the shared options.

Importing the package sets the passive OpenMP wait before torch is imported (``dcac.cli.main``).
"""

from dcac.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
