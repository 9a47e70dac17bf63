"""The errors a person can act on, raised by every layer and shown by the CLI (one line, exit 2)
or by the widgets (one notification). Anything else is a bug and keeps its traceback."""
from __future__ import annotations


class InputError(ValueError):
    """Bad input a person can fix: a missing folder, no images, an unreadable file, a wrong setting."""


class ModelFileError(InputError):
    """A model or scorer-network file is missing, not one of ours, or damaged."""


class NoCellsFound(InputError):
    """Segmentation found nothing that looks like a cell."""


class PlaneTooLarge(InputError):
    """The plane would not fit in the free memory."""


class OutputError(InputError):
    """A result or model could not be written (disk full, read-only folder); nothing was left half-written."""


class ScorerUnavailable(InputError):
    """The model cannot run the scorer asked for (unknown, uncalibrated, or its network is missing)."""


class Cancelled(RuntimeError):
    """The user stopped a long job (detection, training, scoring); nothing was produced."""


# What the user interfaces report as a message rather than a traceback. ValueError stays in the
# list because numpy, scikit-image and torch raise it for input they cannot take; OSError because
# a file system can fail (an I/O error, a network drive gone) where no bug is.
USER_ERRORS = (InputError, OSError, ValueError)
