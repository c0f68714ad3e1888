"""Plans as the release compiles them, for tests that check the statistic's part alone."""

from __future__ import annotations

from decimal import Decimal

from privacy import DatasetMetadata, Plan, QueryRequest
from privacy.amount import PrivacyModel
from privacy.compile import cached_plan
from privacy.query import resolve_query


def statistic_plan(
    query: QueryRequest, metadata: DatasetMetadata, model: PrivacyModel, alpha: float = 0.05
) -> Plan:
    """The plan of the statistic alone at the query's cost (no truncation estimate): what
    a release compiles for the part of its cost the statistic gets."""
    return cached_plan(resolve_query(query, metadata), metadata, model, alpha)


def truncation_cost(plan: Plan) -> Decimal:
    """The part of ``plan``'s cost that estimates what its bounds drop (0 without)."""
    return plan.truncation.cost if plan.truncation is not None else Decimal(0)
