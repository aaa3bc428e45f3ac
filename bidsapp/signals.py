"""Signals: SIGTERM and SIGINT stop the run between writes; the caller removes partial files and exits
143 or 130 (128 + the signal's number, as shells and schedulers expect)."""
from __future__ import annotations

import signal
from contextlib import contextmanager

EXIT_CODES = {signal.SIGTERM: 143, signal.SIGINT: 130}
_pending: list[int] = []
_deferring = False


class Interrupted(BaseException):
    """Raised in the main thread when a signal asks the run to stop (not an Exception: no per-image
    handler may swallow it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.code = EXIT_CODES.get(signum, 128 + signum)


def _handler(signum, frame):
    if _deferring:
        _pending.append(signum)
        return
    raise Interrupted(signum)


def install() -> None:
    for signum in EXIT_CODES:
        signal.signal(signum, _handler)


@contextmanager
def deferred_signals():
    """A signal that arrives inside this block takes effect when the block ends."""
    global _deferring
    outer = _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = outer
        if not outer and _pending:
            raise Interrupted(_pending.pop(0))
