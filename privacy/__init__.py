"""Ruis' privacy layer: public metadata + query → OpenDP measurement, cost, accuracy.

Pure: no web framework, no database. See :func:`plan_query` (what a query
costs and how accurate it is, from public metadata only) and :func:`execute`
(run it once on the data).
"""

from privacy.compile import NoiseComponent
from privacy.data import frame_schema, load_frame
from privacy.errors import InvalidDataset, InvalidQuery, PrivacyError, ReleaseFailed
from privacy.metadata import DatasetMetadata
from privacy.plan import (
    Accuracy,
    Plan,
    ReleaseResult,
    clear_plan_cache,
    execute,
    plan_query,
    prepare_frame,
)
from privacy.query import (
    AccuracyTarget,
    EpsilonLoss,
    Filter,
    QueryRequest,
    RhoLoss,
    canonical_query,
)

__all__ = [
    "Accuracy",
    "AccuracyTarget",
    "DatasetMetadata",
    "EpsilonLoss",
    "Filter",
    "InvalidDataset",
    "InvalidQuery",
    "NoiseComponent",
    "Plan",
    "PrivacyError",
    "QueryRequest",
    "ReleaseFailed",
    "ReleaseResult",
    "RhoLoss",
    "canonical_query",
    "clear_plan_cache",
    "execute",
    "frame_schema",
    "load_frame",
    "plan_query",
    "prepare_frame",
]
