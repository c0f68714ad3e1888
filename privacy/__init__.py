"""Ruis' privacy layer: public metadata + query → OpenDP measurement, cost, accuracy.

Pure: no web framework, no database. See :func:`plan_query` (what a query
costs and how accurate it is, from public metadata only) and :func:`execute`
(run it once on the data).

The package, one job per module (the facade is this file):

- :mod:`privacy.query`: the query a client sends, validated against public
  metadata (:func:`~privacy.query.resolve_query`) and put in canonical form;
- :mod:`privacy.measurement`: the OpenDP measurement of a resolved query;
- :mod:`privacy.accuracy_first`: the smallest cost meeting an accuracy target;
- :mod:`privacy.compile`: a resolved query compiled into a :class:`Plan`;
- :mod:`privacy.plan_cache`: the LRU of compiled plans;
- :mod:`privacy.auto`: automatic bounds (planning and running the selection);
- :mod:`privacy.execute`: running a plan once on the data;
- :mod:`privacy.results`: the Plan, its accuracy and the release result;
- :mod:`privacy.amount`: the one exact privacy-amount type.
"""

from privacy.compile import plan_query
from privacy.data import frame_schema, load_frame
from privacy.errors import InvalidDataset, InvalidQuery, PrivacyError, ReleaseFailed
from privacy.execute import execute, prepare_frame
from privacy.measurement import NoiseComponent
from privacy.metadata import DatasetMetadata
from privacy.plan_cache import clear_plan_cache
from privacy.query import (
    AccuracyTarget,
    EpsilonLoss,
    Filter,
    QueryRequest,
    RhoLoss,
    canonical_query,
)
from privacy.results import Accuracy, Plan, ReleaseResult

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
