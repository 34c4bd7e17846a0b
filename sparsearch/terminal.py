"""What reaches the terminal: the search's own lines; library chatter goes to the run's log.

MLflow prints registry messages ("Successfully registered model", "Created version") straight
to stderr, and libraries print warnings there too; in the middle of a search's progress
and report they are noise. By default such stderr writes become records of the log file
Hydra keeps in the run dir; ``-v`` (``hydra.verbose=true``) leaves them on the terminal.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator

__all__ = ["LIBRARIES", "chatter_to_log_file", "quiet_library_loggers", "verbose"]

# Loggers of libraries whose INFO lines are progress of theirs, not of the search.
LIBRARIES = ("alembic", "mlflow", "optuna", "ray", "urllib3", "matplotlib")

log = logging.getLogger("sparsearch.chatter")


def verbose() -> bool:
    """True under ``-v`` / ``hydra.verbose=true`` (Hydra lowers the root logger to DEBUG)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


class _LinesToLog(io.TextIOBase):
    """A text stream whose complete lines become log records of ``sparsearch.chatter``."""

    def __init__(self) -> None:
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if line.strip():
                log.info("%s", line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            log.info("%s", self.pending.rstrip())
        self.pending = ""


def quiet_library_loggers() -> None:
    """Libraries log warnings and errors only, unless ``-v``."""
    if verbose():
        return
    import mlflow  # noqa: F401  (it sets its loggers' levels on import: override after)

    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def chatter_to_log_file() -> Iterator[None]:
    """Sends what libraries write to stderr to the run's log file, for the ``with`` block.

    Without a log file to write to (``run`` called outside Hydra's logging), or under
    ``-v``, nothing changes.
    """
    files: list[logging.Handler] = [h for h in logging.getLogger().handlers
                                    if isinstance(h, logging.FileHandler)]
    if verbose() or not files:
        yield
        return
    log.handlers = files
    log.propagate = False
    stream = _LinesToLog()
    try:
        with contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.flush()
