"""Progress reporting for long jobs: a one-line bar on a terminal, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _format_seconds(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour) for a duration in seconds."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Shows ``done/total``, images per second and the estimated time left.

    On a terminal the line is redrawn in place at most ``tty_interval`` seconds apart; otherwise
    (a log file, a pipe) one plain line is written every ``plain_interval`` seconds.
    ``stream=None`` disables output.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = sys.stderr,
        label: str = "images",
        tty_interval: float = 0.2,
        plain_interval: float = 10.0,
    ) -> None:
        self.total = total
        self.stream = stream
        self.label = label
        self.is_tty = bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())
        self.interval = tty_interval if self.is_tty else plain_interval
        self.started = time.monotonic()
        self._last_shown = self.started
        self.done = 0
        self.processed = 0

    def rate(self) -> float:
        """Items processed (not counting skipped ones) per second since the start."""
        elapsed = time.monotonic() - self.started
        return self.processed / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The current progress text."""
        rate = self.rate()
        remaining = self.total - self.done
        eta = _format_seconds(remaining / rate) if rate > 0 else "?"
        elapsed = _format_seconds(time.monotonic() - self.started)
        percent = 100.0 * self.done / self.total if self.total else 100.0
        text = (
            f"{self.done}/{self.total} {self.label} ({percent:.0f}%) {rate:.1f}/s elapsed {elapsed} ETA {eta}"
        )
        if self.is_tty:
            width = 24
            filled = int(width * self.done / self.total) if self.total else width
            text = "[" + "#" * filled + "." * (width - filled) + "] " + text
        return text

    def advance(self, done: int, processed: int) -> None:
        """Count ``done`` more items, of which ``processed`` really went through the models."""
        self.done += done
        self.processed += processed
        now = time.monotonic()
        if self.stream is not None and now - self._last_shown >= self.interval:
            self._last_shown = now
            self._show()

    def _show(self) -> None:
        assert self.stream is not None
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Show the final state (and end the terminal line)."""
        if self.stream is None:
            return
        self._show()
        if self.is_tty:
            self.stream.write("\n")
            self.stream.flush()
