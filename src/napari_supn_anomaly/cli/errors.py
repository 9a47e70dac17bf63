"""Errors the command reports as one line (exit code 2) instead of a traceback."""
from __future__ import annotations

from ..models.model_file import ModelFileError


class InputError(ValueError):
    """Bad input a person can fix: a missing folder, no images, an unreadable file."""


# Anything of these types is the user's input being wrong, not a bug.
UsageError = (InputError, ModelFileError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)
