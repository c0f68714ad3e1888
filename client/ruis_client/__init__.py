"""A Python client for Ruis, for analysts.

::

    from ruis_client import Ruis, BudgetExceeded

    with Ruis("http://127.0.0.1:8000", analyst_key) as ruis:
        print(ruis.budget("mobility_events"))
        preview = ruis.preview("mobility_events", "unit_count",
                               group_by=["municipality"], epsilon=0.5)
        release = ruis.query("mobility_events", "unit_count",
                             group_by=["municipality"], epsilon=0.5)
        release.frame        # a Polars DataFrame: one row per municipality, noisy "value"
        release.accuracy     # Accuracy(alpha=0.05, error_bound=...)

Every value it returns is differentially private; every non-cached query is
charged to your privacy budget. Every release's receipt is checked against the signed
ledger (``release.verified``); pin the ledger's key and keep a checkpoint file to notice
a ledger that was rewritten or rolled back::

    Ruis(url, analyst_key, ledger_key=vkey, checkpoint_file="ruis-checkpoint.json")
"""

from ruis_client._client import Condition, Ruis, Statistic
from ruis_client._exceptions import (
    APIError,
    BudgetExceeded,
    Conflict,
    DatasetRetired,
    Forbidden,
    InvalidQuery,
    LedgerInconsistency,
    LedgerInconsistencyWarning,
    NotFound,
    Problem,
    ReceiptInvalid,
    ReceiptInvalidWarning,
    RuisError,
    ServerError,
    TransportError,
    Unauthorized,
)
from ruis_client._models import (
    Accuracy,
    Budget,
    BudgetPeriod,
    Checkpoint,
    Cost,
    Cumulative,
    Dataset,
    Preview,
    Receipt,
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
    "Checkpoint",
    "Condition",
    "Conflict",
    "Cost",
    "Cumulative",
    "Dataset",
    "DatasetRetired",
    "Forbidden",
    "InvalidQuery",
    "LedgerInconsistency",
    "LedgerInconsistencyWarning",
    "NotFound",
    "Preview",
    "Problem",
    "Receipt",
    "ReceiptInvalid",
    "ReceiptInvalidWarning",
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
