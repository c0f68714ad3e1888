"""The plan cache: a thread-safe LRU of compiled plans, bounded in count and in bytes.

Compiling a plan calls OpenDP's constructors, maps and summaries, which costs
far more than looking one up; plans depend only on public metadata (keyed by
its digest), the canonical query, the privacy model and ``alpha``, so a plan
compiled once serves every later request of that shape. Nothing here reads
data or decides privacy.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from privacy.results import Plan

PLAN_CACHE_SIZE = 256
PLAN_CACHE_BYTES = 256 * 2**20
"""Default bound on the estimated bytes of cached plans (the API sets RUIS_PLAN_CACHE_BYTES)."""
PLAN_BASE_BYTES = 64 * 1024
PLAN_BYTES_PER_CELL = 64
PLAN_BYTES_PER_CANDIDATE = 1024
QUANTILE_CANDIDATES_ESTIMATE = 128


class _PlanCache:
    """A thread-safe LRU of plans bounded in count and in estimated bytes; concurrent
    requests for one key compile it once.

    A plan's size is estimated from public sizes only (:func:`plan_bytes`); the
    least recently used plans are evicted while the total passes ``max_bytes``,
    and a plan larger than ``max_bytes`` on its own is returned but not kept.
    """

    def __init__(self, size: int, max_bytes: int = PLAN_CACHE_BYTES) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._total_bytes = 0
        self._lock = threading.Lock()
        self._plans: OrderedDict[tuple[str, ...], tuple[Plan, int]] = OrderedDict()
        self._building: dict[tuple[str, ...], threading.Lock] = {}

    def get_or_build(self, key: tuple[str, ...], build: Callable[[], Plan]) -> Plan:
        """The plan under ``key``, built once by ``build`` if absent (concurrent callers wait)."""
        with self._lock:
            if key in self._plans:
                self._plans.move_to_end(key)
                return self._plans[key][0]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._plans:
                    return self._plans[key][0]
            try:
                plan = build()
            finally:
                with self._lock:
                    self._building.pop(key, None)
            size = plan_bytes(plan)
            with self._lock:
                if size <= self._max_bytes:
                    self._plans[key] = (plan, size)
                    self._total_bytes += size
                self._evict()
            return plan

    def _evict(self) -> None:
        while self._plans and (
            len(self._plans) > self._size or self._total_bytes > self._max_bytes
        ):
            _, (_, size) = self._plans.popitem(last=False)
            self._total_bytes -= size

    def set_max_bytes(self, max_bytes: int) -> None:
        """Bound the estimated bytes held (evicting at once if over)."""
        with self._lock:
            self._max_bytes = max_bytes
            self._evict()

    @property
    def nbytes(self) -> int:
        """The estimated bytes of the plans held."""
        with self._lock:
            return self._total_bytes

    def clear(self) -> None:
        """Forget every plan."""
        with self._lock:
            self._plans.clear()
            self._total_bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._plans)


def plan_bytes(plan: Plan) -> int:
    """An upper estimate of the memory ``plan`` holds, from public sizes only.

    The measurement holds the public key product (``cells`` rows of the
    ``group_by`` columns) and, for quantiles, its candidates; an automatic plan
    also its selection candidates. ``PLAN_BYTES_PER_CELL`` per cell and column
    over-estimates what was measured (README, "Limits").
    """
    query = plan.query
    cells = query.cells if query is not None else 1
    columns = len(query.group_by) + 1 if query is not None else 1
    candidates = sum(
        len(v) if isinstance(v, list) else 1
        for v in (plan.auto.candidates.values() if plan.auto else ())
    )
    if query is not None and query.statistic == "quantile":
        candidates += QUANTILE_CANDIDATES_ESTIMATE
    return (
        PLAN_BASE_BYTES
        + cells * columns * PLAN_BYTES_PER_CELL
        + candidates * PLAN_BYTES_PER_CANDIDATE
    )


_CACHE = _PlanCache(PLAN_CACHE_SIZE)


def set_plan_cache_bytes(max_bytes: int) -> None:
    """Bound the plan cache to ``max_bytes`` estimated bytes (``RUIS_PLAN_CACHE_BYTES``)."""
    _CACHE.set_max_bytes(max_bytes)


def clear_plan_cache() -> None:
    """Forget every compiled plan (tests; metadata changes are keyed anyway)."""
    _CACHE.clear()


def plan_cache_size() -> int:
    """How many compiled plans the LRU holds."""
    return len(_CACHE)


def plan_cache_bytes() -> int:
    """The estimated bytes of the plans the LRU holds (at most its byte bound)."""
    return _CACHE.nbytes


def cached_plan(key: tuple[str, ...], build: Callable[[], Plan]) -> Plan:
    """The plan under ``key`` from the LRU, built once by ``build`` when absent."""
    return _CACHE.get_or_build(key, build)
