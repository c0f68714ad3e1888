"""A Python client for Ruis, for analysts.

::

    from client import Ruis, BudgetExceeded

    with Ruis("http://127.0.0.1:8000", analyst_key) as ruis:
        print(ruis.budget("mobility_events"))
        preview = ruis.preview("mobility_events", "unit_count",
                               group_by=["municipality"], epsilon=0.5)
        release = ruis.query("mobility_events", "unit_count",
                             group_by=["municipality"], epsilon=0.5)
        release.frame        # a Polars DataFrame: one row per municipality, noisy "value"
        release.accuracy     # Accuracy(alpha=0.05, error_bound=...)

Every value it returns is differentially private; every non-cached query is
charged to your privacy budget.
"""

from client._client import Condition, Ruis, Statistic
from client._exceptions import (
    APIError,
    BudgetExceeded,
    Conflict,
    DatasetRetired,
    Forbidden,
    InvalidQuery,
    NotFound,
    Problem,
    RuisError,
    ServerError,
    TransportError,
    Unauthorized,
)
from client._models import (
    Accuracy,
    Budget,
    BudgetPeriod,
    Cost,
    Cumulative,
    Dataset,
    Preview,
    Release,
    ReleaseSummary,
    Truncation,
)

__all__ = [
    "APIError",
    "Accuracy",
    "Budget",
    "BudgetExceeded",
    "BudgetPeriod",
    "Condition",
    "Conflict",
    "Cost",
    "Cumulative",
    "Dataset",
    "DatasetRetired",
    "Forbidden",
    "InvalidQuery",
    "NotFound",
    "Preview",
    "Problem",
    "Release",
    "ReleaseSummary",
    "Ruis",
    "RuisError",
    "ServerError",
    "Statistic",
    "TransportError",
    "Truncation",
    "Unauthorized",
]
