"""The clock tests move by hand: turns, actions and the sandbox all read it, nothing sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta

START = datetime(2026, 11, 26, 9, 0, 0)


class Clock:
    """Callable like utcnow(); advance() moves it on."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
