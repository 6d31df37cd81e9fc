"""Where the command line writes, and how: user text is never read as rich markup.

A path, a key or an exception message may contain ``[`` and ``]``; printed as markup, ``[/x]``
crashes rich and ``[on]`` silently disappears. Everything user-derived goes out as plain
:class:`rich.text.Text`; only the fixed labels (``error:``, ``info:``) carry a style.
"""
from __future__ import annotations

import logging

from rich.console import Console
from rich.text import Text

err = Console(stderr=True, highlight=False, soft_wrap=True)  # one message = one line, never wrapped
out = Console(highlight=False, soft_wrap=True)

STYLES = {"error": "red", "warning": "yellow", "info": "cyan"}


def labelled(label: str, message: object) -> Text:
    """``label: message`` with the label styled and the message as plain text."""
    return Text.assemble((f"{label}:", STYLES.get(label, "bold")), " ", str(message))


def plain(message: object) -> Text:
    return Text(str(message))


class ConsoleHandler(logging.Handler):
    """The engine's ``trickbag`` logger on stderr as ``info: ...`` / ``warning: ...`` lines."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            label = "warning" if record.levelno >= logging.WARNING else "info"
            err.print(labelled(label, record.getMessage()))
        except Exception:  # logging must never take the command down
            self.handleError(record)


def setup_logging() -> None:
    """Idempotent: one handler on the ``trickbag`` logger, INFO and up. Records still propagate,
    so pytest's caplog (or an application's own logging set-up) sees them too."""
    logger = logging.getLogger("trickbag")
    if not any(isinstance(h, ConsoleHandler) for h in logger.handlers):
        logger.addHandler(ConsoleHandler())
    logger.setLevel(logging.INFO)


def quiet_logging() -> None:
    """Take the console handler off again (the TUI shows messages its own way)."""
    logger = logging.getLogger("trickbag")
    for handler in [h for h in logger.handlers if isinstance(h, ConsoleHandler)]:
        logger.removeHandler(handler)
