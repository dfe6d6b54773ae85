"""The user-error classes. Every mistake a user can fix (a bad key, a missing file, a checkpoint
that does not fit) is a `GanzooError` whose message is one line naming the culprit and the fix;
the CLI prints it and exits 2, the Prefect flows fail the run at once without retrying it."""

from __future__ import annotations

EXIT_USER_ERROR = 2  # the exit code of every front end for a GanzooError


class GanzooError(ValueError):
    """Base of every user error: one line that names the culprit (key, file, value) and the fix."""


class ConfigError(GanzooError):
    """A bad params file, override, command-line argument or checkpoint/config mismatch."""


class DataError(GanzooError):
    """Bad or missing data: a missing folder, an unreadable image, a dataset that does not fit."""
