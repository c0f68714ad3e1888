"""Compatibility: the names ``privacy.plan`` held before planning was split by job.

Nothing is defined here. The result types are in :mod:`privacy.results`, the
plan cache in :mod:`privacy.plan_cache`, accuracy-first in
:mod:`privacy.accuracy_first`, compiling in :mod:`privacy.compile`, automatic
bounds in :mod:`privacy.auto` and executing in :mod:`privacy.execute`.
"""

from privacy.accuracy_first import MAX_ACCURACY_FIRST_COST
from privacy.auto import AutoPlan
from privacy.compile import DEFAULT_ALPHA, plan_query
from privacy.execute import MATCH_COLUMN, execute, filtered_frame, masked_frame, prepare_frame
from privacy.plan_cache import (
    PLAN_CACHE_BYTES,
    PLAN_CACHE_SIZE,
    clear_plan_cache,
    plan_bytes,
    plan_cache_bytes,
    plan_cache_size,
    set_plan_cache_bytes,
)
from privacy.results import Accuracy, Plan, ReleaseResult

__all__ = [
    "DEFAULT_ALPHA",
    "MATCH_COLUMN",
    "MAX_ACCURACY_FIRST_COST",
    "PLAN_CACHE_BYTES",
    "PLAN_CACHE_SIZE",
    "Accuracy",
    "AutoPlan",
    "Plan",
    "ReleaseResult",
    "clear_plan_cache",
    "execute",
    "filtered_frame",
    "masked_frame",
    "plan_bytes",
    "plan_cache_bytes",
    "plan_cache_size",
    "plan_query",
    "prepare_frame",
    "set_plan_cache_bytes",
]
