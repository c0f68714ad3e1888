"""A Python client for Ruis: for analysts, admins and auditors (``pip install ./client``;
it needs only httpx and Polars).

::

    from ruis_client import Ruis, BudgetExceeded

    with Ruis("http://127.0.0.1:8000", analyst_key) as ruis:
        print(ruis.budget("mobility_events"))
        preview = ruis.preview("mobility_events", "unit_count",
                               group_by=["municipality"], epsilon=0.5)
        release = ruis.query("mobility_events", "unit_count",
                             group_by=["municipality"], epsilon=0.5)
        release.frame        # Polars: municipality, noisy "value", its "lower", "upper"
        release.accuracy     # Accuracy(alpha=0.05, error_bound=..., covers=...)
        release.to_pandas()  # with pip install ruis-client[pandas]

Every value it returns is differentially private; every non-cached query is
charged to your privacy budget. Every release's receipt is checked against the signed
ledger (``release.verified``); pin the ledger's key and keep a checkpoint file to notice
a ledger that was rewritten or rolled back::

    Ruis(url, analyst_key, ledger_key=vkey, checkpoint_file="ruis-checkpoint.json")

Checking the ledger's signature needs ``cryptography`` (``pip install ruis-client[verify]``);
without it the client checks each receipt's entry hash and inclusion proof, warns once
(:class:`SignatureUncheckedWarning`) and leaves ``release.verified`` False.

The same client manages the service with an admin's key (consumers, keys, datasets,
budgets, limits) and audits it with an auditor's (the ledger, its export, verification,
checkpoints, proofs and cosignatures); see :class:`Ruis`.
"""

from ruis_client._client import Bounds, Condition, ContributionBound, Ruis, Statistic
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
    SignatureUncheckedWarning,
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
    DatasetVersion,
    LevelAccuracy,
    PandasMissing,
    Preview,
    Receipt,
    Release,
    ReleaseSummary,
    Truncation,
)
from ruis_client._records import (
    ApiKey,
    CheckpointSummary,
    ConsistencyProof,
    Consumer,
    ConsumerCreated,
    CosignatureAccepted,
    EffectiveLimits,
    Health,
    InclusionProof,
    LedgerDiscrepancy,
    LedgerEntry,
    LedgerPage,
    LedgerVerification,
    Limits,
    NewApiKey,
)

__all__ = [
    "APIError",
    "Accuracy",
    "ApiKey",
    "Bounds",
    "Budget",
    "BudgetExceeded",
    "BudgetPeriod",
    "Checkpoint",
    "CheckpointSummary",
    "Condition",
    "Conflict",
    "ConsistencyProof",
    "Consumer",
    "ConsumerCreated",
    "ContributionBound",
    "CosignatureAccepted",
    "Cost",
    "Cumulative",
    "Dataset",
    "DatasetRetired",
    "DatasetVersion",
    "EffectiveLimits",
    "Forbidden",
    "Health",
    "InclusionProof",
    "InvalidQuery",
    "LedgerDiscrepancy",
    "LedgerEntry",
    "LedgerInconsistency",
    "LedgerInconsistencyWarning",
    "LedgerPage",
    "LedgerVerification",
    "LevelAccuracy",
    "Limits",
    "NewApiKey",
    "NotFound",
    "PandasMissing",
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
    "SignatureUncheckedWarning",
    "Statistic",
    "TransportError",
    "Truncation",
    "Unauthorized",
]
