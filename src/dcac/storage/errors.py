"""The error of an unreadable run folder or checkpoint (torch-free, so the CLI can name it without starting torch)."""


class CheckpointError(RuntimeError):
    """A run folder or checkpoint that cannot be read; the message names the file."""
