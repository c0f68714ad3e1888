"""Releases answered at quantised times, so small data-dependent differences in work are hidden.

:func:`quantised` wraps the release use-case: once the use-case has called
:func:`after_debit` (the cost is debited, and the data is about to be read),
the response — a release or any error raised after that point — leaves
:func:`quantised` only at the next multiple of the quantum counted from when
the use-case started. Answers that never read the data (validation errors,
refusals, cached answers) are not delayed: their time depends on the query and
the ledger, not on the data. The route is synchronous (it runs in a worker
thread), so sleeping here blocks no event loop.

The primary defence is that the work itself does not depend on how many rows
the filters match (see "Timing" in :mod:`privacy.truncation`); the quantum hides
what is left (e.g. the OpenDP measurement reading the truncated rows). See
``docs/threat-model.md`` for the measured residual.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_QUANTUM_MS = 100
"""The default quantum (``RUIS_RELEASE_TIME_QUANTUM_MS``); see docs/threat-model.md."""

_QUANTUM: ContextVar[float | None] = ContextVar("ruis_release_quantum", default=None)


def after_debit(quantum_ms: int) -> None:
    """From now on, the wrapping :func:`quantised` call returns or raises at a multiple of it.

    ``quantum_ms`` ≤ 0 turns padding off for this call.
    """
    _QUANTUM.set(quantum_ms / 1000 if quantum_ms > 0 else None)


def padded_duration(elapsed: float, quantum: float) -> float:
    """The smallest positive multiple of ``quantum`` (seconds) that is ≥ ``elapsed``."""
    return max(1, math.ceil(elapsed / quantum)) * quantum


def quantised(function: Callable[P, R]) -> Callable[P, R]:
    """``function``, but returning/raising at a multiple of the quantum once it has debited.

    Time is counted from the call; the wait is a plain ``time.sleep`` in the
    calling (worker) thread.
    """

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.monotonic()
        token = _QUANTUM.set(None)
        try:
            return function(*args, **kwargs)
        finally:
            quantum = _QUANTUM.get()
            _QUANTUM.reset(token)
            if quantum is not None:
                elapsed = time.monotonic() - started
                time.sleep(max(0.0, padded_duration(elapsed, quantum) - elapsed))

    return wrapper
