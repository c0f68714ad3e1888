"""The release body: one typed model of a release, built once from its plan.

:class:`PlannedRelease` describes a query from its :class:`~privacy.Plan` alone
(no data read): the preview, the ``release`` ledger entry and the answer are
all built from it. :class:`QueryResponse` is the release as answered and as
stored (``releases.body_json`` holds its JSON): built fresh by
:meth:`PlannedRelease.released`, and read back for a cached or re-read answer
with :meth:`QueryResponse.stored` and :meth:`QueryResponse.answered_again`.
Every ε or ρ in a body is a :class:`~privacy.amount.PrivacyAmount`, shown as a
cost (``{"model": "pure", "epsilon": 0.5}``) or, where the cost says the
model, as an amount (``{"epsilon": 0.5}``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    WithJsonSchema,
)

from privacy import Accuracy as PlannedAccuracy
from privacy import Plan, ReleaseResult
from privacy.accounting import zcdp_to_epsilon_delta
from privacy.amount import MODEL_OF, UNIT_OF, PrivacyAmount
from privacy.auto import NOISE_ONLY
from privacy.kept import TruncationEstimate
from privacy.periods import Period, PeriodSpec


def _absent(value: object) -> bool:
    return value is None


def _cost(value: Any) -> PrivacyAmount:
    if isinstance(value, PrivacyAmount):
        return value
    if not isinstance(value, dict):
        raise ValueError("a cost is an object with its model and its amount")
    return PrivacyAmount.from_document(value)


def _amount(value: Any) -> PrivacyAmount:
    if isinstance(value, PrivacyAmount):
        return value
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in MODEL_OF:
        raise ValueError('an amount is {"epsilon": x} or {"rho": x}')
    (unit,) = value
    return PrivacyAmount.from_document(value, MODEL_OF[unit])


_UNITS_SCHEMA = {unit: {"type": "number", "minimum": 0} for unit in UNIT_OF.values()}
Cost = Annotated[
    PrivacyAmount,
    PlainValidator(_cost),
    PlainSerializer(PrivacyAmount.document),
    WithJsonSchema(
        {
            "type": "object",
            "properties": {"model": {"type": "string", "enum": list(UNIT_OF)}, **_UNITS_SCHEMA},
            "required": ["model"],
        }
    ),
]
"""A privacy amount shown with its model: ``{"model": "zcdp", "rho": 0.1}``."""
Amount = Annotated[
    PrivacyAmount,
    PlainValidator(_amount),
    PlainSerializer(PrivacyAmount.unit_document),
    WithJsonSchema({"type": "object", "properties": _UNITS_SCHEMA}),
]
"""A privacy amount shown in its unit only: ``{"rho": 0.1}``."""
Number = int | float
"""A bound or candidate as declared: integers stay integers."""


class LevelAccuracy(BaseModel):
    """One level of a ``rollup`` release: with probability ≥ 1 − alpha every cell of
    that level is within ``error_bound`` of its exact value (after the consistency step;
    README, 'The crowd model')."""

    level: str = Field(description="the level's column (the rows' 'level' value)")
    error_bound: float
    noise_error_bound: float | None = Field(
        default=None, exclude_if=_absent, description="with noise_and_bias: the noise part"
    )
    bias_bound: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="with noise_and_bias: a DP upper bound on how much the contribution "
        "bounds lowered any one cell of the level",
    )


Threshold = Annotated[
    int | None,
    Field(
        exclude_if=_absent,
        description="grouping on private keys: a group is released only where its noisy "
        "count reaches this threshold (OpenDP's)",
    ),
]
KeySelectionDelta = Annotated[
    float | None,
    Field(
        exclude_if=_absent,
        description="grouping on private keys: OpenDP's δ of the key selection (≤ the "
        "dataset's delta), a bound on the chance that a key one unit alone holds is released",
    ),
]


class Accuracy(BaseModel):
    """Per-cell accuracy: with probability ≥ 1 − alpha a cell's value is within
    ``error_bound`` of the exact value ``covers`` names: ``noise`` — on the truncated,
    clamped data; ``noise_and_bias`` — on the whole data (the truth then lies in
    ``[value − noise_error_bound, value + noise_error_bound + bias_bound]``).
    ``mean``: ``error_bound`` in the column's units; a release states the largest
    per-cell half-width and each row carries ``lower``, ``upper``; a preview states it
    only for an accuracy target with ``min_cell_rows``. ``quantile``: ``error_bound``
    is null and ``rank_error_bound`` = r rows."""

    alpha: float
    error_bound: float | None
    covers: str = Field(
        default=NOISE_ONLY,
        description="what error_bound accounts for: 'noise' (the value on the truncated, "
        "clamped data) or 'noise_and_bias' (the value on the whole data)",
    )
    noise_error_bound: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="with noise_and_bias: the noise part of error_bound",
    )
    bias_bound: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="with noise_and_bias: a DP upper bound on how much the contribution "
        "bounds lowered any one cell (bounding only drops data)",
    )
    error_bound_range: list[float] | None = Field(
        default=None,
        description="with automatic bounds, before they are chosen: the bound "
        "at the smallest and at the largest candidates",
    )
    rank_error_bound: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="quantile only: r, in rows of the cell. With probability ≥ 1 − alpha "
        "the released value lies between the cell's true quantiles at ranks q·n − r and "
        "q·n + r, widened by the candidate grid (the value is always a candidate; README, "
        "'Additions to the contract'). In rows because the cell's n is private (r/n as a "
        "level). Absent when null",
    )
    levels: list[LevelAccuracy] | None = Field(
        default=None,
        exclude_if=_absent,
        description="rollup only: each level's bound (the child level first); error_bound "
        "is the largest of them. Absent otherwise",
    )

    @classmethod
    def of(cls, accuracy: PlannedAccuracy) -> Accuracy:
        """The accuracy a plan or a release reports."""
        shown = accuracy.error_bound_range
        return cls(
            alpha=accuracy.alpha,
            error_bound=accuracy.error_bound,
            covers=accuracy.covers,
            noise_error_bound=accuracy.noise_error_bound,
            bias_bound=accuracy.bias_bound,
            error_bound_range=list(shown) if shown is not None else None,
            rank_error_bound=accuracy.rank_error_bound,
            levels=(
                [
                    LevelAccuracy(
                        level=level.level,
                        error_bound=level.error_bound,
                        noise_error_bound=level.noise_error_bound,
                        bias_bound=level.bias_bound,
                    )
                    for level in accuracy.levels
                ]
                if accuracy.levels is not None
                else None
            ),
        )

    def ledger_document(self) -> dict[str, Any]:
        """As the ledger records it: ``error_bound_range`` only where there is one
        (``rank_error_bound`` is absent when null anyway)."""
        unranged = {"error_bound_range"} if self.error_bound_range is None else None
        return self.model_dump(mode="json", exclude=unranged)


class Truncation(BaseModel):
    """What the contribution bounds (and clamping) dropped, estimated with DP out of the
    query's own cost: with probability ≥ 1 − alpha each share is within its error bound."""

    kept_share: float = Field(
        description="the share of the units' contributions (after the filters) that the "
        "contribution bounds kept"
    )
    kept_share_error_bound: float
    clamped_share: float | None = Field(
        default=None,
        exclude_if=_absent,
        description="sum, mean, quantile: the share of kept values outside the clamping bounds",
    )
    clamped_share_error_bound: float | None = Field(default=None, exclude_if=_absent)
    cost: Amount = Field(description="the part of the query's cost these estimates took")

    @classmethod
    def of(cls, estimate: TruncationEstimate) -> Truncation:
        """The response's ``truncation`` object."""
        return cls.model_validate(estimate.document())


class EpsilonDelta(BaseModel):
    """The (ε, δ)-DP equivalent of a zCDP cost, at the dataset's δ."""

    epsilon: float
    delta: float

    @classmethod
    def of(cls, plan: Plan) -> EpsilonDelta | None:
        """The (ε, δ) that the plan's debited cost implies (None under pure DP)."""
        if plan.epsilon_delta is None:
            return None
        epsilon, delta = plan.epsilon_delta
        return cls(epsilon=epsilon, delta=delta)


class AutoCandidates(BaseModel):
    """The public candidates an automatic bound is chosen among (those asked for)."""

    max_partitions_contributed: list[int] | None = Field(default=None, exclude_if=_absent)
    max_contributions_per_partition: list[int] | None = Field(default=None, exclude_if=_absent)
    clamp: list[list[Number]] | None = Field(default=None, exclude_if=_absent)


class SelectionStep(BaseModel):
    """One measurement that chooses bounds: what it chooses, its cost, noise and loss."""

    chooses: Literal["contribution_bounds", "clamp"]
    cost: Amount
    mechanism: str
    noise_scale: float
    opendp_privacy_loss: float


class AutoBounds(BaseModel):
    """Automatic bounds: the cost split, the candidates and the selection steps."""

    share: float
    selection_cost: Amount
    statistic_cost: Amount
    candidates: AutoCandidates
    selection: list[SelectionStep]
    noise_scale_range: list[float]

    @classmethod
    def of(cls, plan: Plan) -> AutoBounds | None:
        """The automatic part of ``plan`` (None with fixed bounds)."""
        auto = plan.auto
        if auto is None:
            return None
        return cls(
            share=float(auto.share),
            selection_cost=PrivacyAmount(plan.model, auto.selection_cost),
            statistic_cost=PrivacyAmount(plan.model, auto.statistic_cost),
            candidates=AutoCandidates.model_validate(auto.candidates),
            selection=[
                SelectionStep.model_validate(
                    {**step, "cost": PrivacyAmount(plan.model, step["cost"])}
                )
                for step in auto.selection_steps()
            ],
            noise_scale_range=list(auto.noise_scale_range),
        )


Auto = Literal["auto"]


class Bounds(BaseModel):
    """The contribution and clamping bounds a query runs with (``auto``: chosen with DP)."""

    max_partitions_contributed: int | Auto
    max_contributions_per_partition: int | Auto
    clamp: list[Number] | Auto | None
    max_rows: int | None
    quantile_candidates: int | None = Field(default=None, exclude_if=_absent)
    candidates: AutoCandidates | None = Field(default=None, exclude_if=_absent)
    contribution_bounds_per: list[str] | None = Field(default=None, exclude_if=_absent)
    """k and c hold per value of these grouping columns (absent: over the whole dataset)."""


class BoundsChosen(BaseModel):
    """The bounds automatic bounds chose (noise_scale and accuracy are at these)."""

    max_partitions_contributed: int
    max_contributions_per_partition: int
    clamp: list[Number] | None


class SelectionChoice(BaseModel):
    """What one selection measurement released (a noisy histogram), how it scored the
    candidates, and its noise and privacy loss."""

    histogram: list[Any]
    scores: list[dict[str, Any]]
    mechanism: str
    noise_scale: float
    opendp_privacy_loss: float


class ContributionChoice(SelectionChoice):
    """The contribution-bounds selection (``columns``: what its histogram counts)."""

    columns: list[str]


class ClampChoice(SelectionChoice):
    """The clamp selection among its candidate bounds."""

    candidates: list[list[Number]]


class SelectionRecord(BaseModel):
    """What the selection measurements released (DP values), for the ledger."""

    contribution_bounds: ContributionChoice | None = Field(default=None, exclude_if=_absent)
    clamp: ClampChoice | None = Field(default=None, exclude_if=_absent)


# --- budgets per period (README, "How the budget is kept") ---


class ChargedPeriod(BaseModel):
    """With a budget per period: the one period a query is charged in."""

    column: str
    every: str
    period: str = Field(description="2026-03 (month), 2026-W10 (ISO week), 2026-03-05 (day)")
    start: str = Field(description="its first day (ISO date)")
    end: str = Field(description="its last day (ISO date)")

    @classmethod
    def of(cls, spec: PeriodSpec, period: Period) -> ChargedPeriod:
        """The period ``period`` of the budget's ``spec``."""
        return cls(column=spec.column, every=spec.every, **period.document())


class Cumulative(BaseModel):
    """With a budget per period: the guarantee for a unit present in every period charged
    so far, the sum over those periods of what they spent (ε, or ρ with its (ε, δ)
    equivalent at the dataset's δ). Budgets of different periods add up for such a unit."""

    epsilon: float | None = Field(default=None, exclude_if=_absent)
    rho: float | None = Field(default=None, exclude_if=_absent)
    epsilon_delta: EpsilonDelta | None = Field(default=None, exclude_if=_absent)

    @classmethod
    def of(cls, amount: PrivacyAmount, delta: float) -> Cumulative:
        """The cumulative figure of ``amount`` summed over the charged periods."""
        if amount.model == "pure":
            return cls(epsilon=amount.number())
        rho = amount.number()
        epsilon = zcdp_to_epsilon_delta(rho, delta) if rho > 0 else 0.0
        return cls(rho=rho, epsilon_delta=EpsilonDelta(epsilon=epsilon, delta=delta))


_PERIOD_DESCRIPTION = "with a budget per period: the period this query is charged in"
_CUMULATIVE_DESCRIPTION = (
    "with a budget per period: the guarantee for a unit present in all periods charged "
    "so far (the sum of what they spent)"
)


class QueryPreview(BaseModel):
    """What a query would cost and how accurate it would be (no data read, nothing spent)."""

    dataset: str
    statistic: str
    columns: list[str]
    query: dict[str, Any] = Field(description="the canonical query that would run")
    cost: Cost
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    epsilon_delta: EpsilonDelta | None = None
    budget_remaining: Amount
    fits_budget: bool = Field(
        description="the cost fits both what remains of your budget and, when the dataset "
        "has a cap, what remains under it (a query would then not be refused with a 409)"
    )
    dataset_cap_remaining: Amount | None = Field(
        default=None, description="what remains under the dataset's cap; null without a cap"
    )
    bounds: Bounds
    auto: AutoBounds | None = Field(
        default=None,
        description="with automatic bounds: the cost split between choosing "
        "them and the statistic, the candidates, the selection steps",
    )
    truncation_cost: Amount | None = Field(
        default=None,
        exclude_if=_absent,
        description="the part of the cost that estimates what the bounds drop "
        "(the release's truncation object); absent where they cannot drop anything",
    )
    threshold: Threshold = None
    delta: KeySelectionDelta = None
    period: ChargedPeriod | None = Field(
        default=None, exclude_if=_absent, description=_PERIOD_DESCRIPTION
    )
    cumulative: Cumulative | None = Field(
        default=None,
        exclude_if=_absent,
        description=_CUMULATIVE_DESCRIPTION + "; a preview shows it before this query",
    )


class QuerySummary(BaseModel):
    """A stored release without its values."""

    id: str
    dataset: str
    statistic: str
    query: dict[str, Any]
    cost: Cost
    mechanism: str
    ledger_seq: int
    created_at: str
    dataset_version: int = 1

    @classmethod
    def stored(cls, body_json: str | None) -> QuerySummary:
        """The summary of a stored release body."""
        return cls.model_validate_json(body_json or "{}")


class Receipt(BaseModel):
    """Proof that a release's ledger entry is in the ledger's signed Merkle tree.

    ``entry`` is the release's ledger entry (seq ``ledger_seq``: its query, cost and
    mechanism); its ``hash`` is SHA-256 of its canonical JSON without ``hash``, its
    leaf is SHA-256(0x00 ‖ that hash), and ``inclusion`` (base64, RFC 9162) proves the
    leaf at ``index`` under the root of ``checkpoint``, a C2SP signed note verified with
    the key of ``GET /v1/ledger/key``. A later checkpoint must be consistent with it
    (``GET /v1/ledger/proofs/consistency``)."""

    checkpoint: str
    index: int
    inclusion: list[str]
    entry: dict[str, Any]


class QueryResponse(BaseModel):
    """A differentially private release (SPEC.md, "Queries")."""

    id: str
    dataset: str
    statistic: str
    columns: list[str]
    rows: list[list[Any]]
    cost: Cost
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    epsilon_delta: EpsilonDelta | None = Field(
        default=None, description="for zCDP costs: the equivalent (ε, δ)"
    )
    budget_remaining: Amount
    cached: bool
    ledger_seq: int
    query: dict[str, Any]
    bounds: Bounds
    bounds_chosen: BoundsChosen | None = Field(
        default=None,
        description="with automatic bounds: the contribution and clamping "
        "bounds chosen (noise_scale and accuracy are at these)",
    )
    auto: AutoBounds | None = Field(
        default=None,
        description="with automatic bounds: the cost split, the candidates and the selection steps",
    )
    truncation: Truncation | None = Field(
        default=None,
        exclude_if=_absent,
        description="where the bounds can drop or clamp data: DP estimates of what they kept",
    )
    keys_selected: int | None = Field(
        default=None,
        exclude_if=_absent,
        description="grouping on private keys: how many groups OpenDP's key selection "
        "released (the rows; sorted by key)",
    )
    threshold: Threshold = None
    delta: KeySelectionDelta = None
    period: ChargedPeriod | None = Field(
        default=None, exclude_if=_absent, description=_PERIOD_DESCRIPTION
    )
    cumulative: Cumulative | None = Field(
        default=None,
        exclude_if=_absent,
        description=_CUMULATIVE_DESCRIPTION + " (as of this answer: a cached or re-read "
        "answer shows it now)",
    )
    created_at: str
    dataset_version: int = Field(
        default=1, description="the version of the dataset this release was computed on"
    )
    receipt: Receipt | None = Field(
        default=None,
        exclude_if=_absent,
        description="proof that the release's ledger entry is in the signed ledger, as of "
        "this answer (a cached or re-read answer carries a newer checkpoint)",
    )
    _opendp_loss: float | None = PrivateAttr(default=None)
    _selection: SelectionRecord | None = PrivateAttr(default=None)

    @classmethod
    def stored(cls, body: str | dict[str, Any]) -> QueryResponse:
        """A stored release body (its JSON text, or that text decoded)."""
        if isinstance(body, str):
            return cls.model_validate_json(body)
        return cls.model_validate(body)

    def answered_again(
        self, remaining: PrivacyAmount, cumulative: Cumulative | None = None
    ) -> QueryResponse:
        """This stored release served again (cached or re-read), with what remains now
        (and, with a budget per period, the cumulative figure now)."""
        update: dict[str, Any] = {"cached": True, "budget_remaining": remaining, "receipt": None}
        if cumulative is not None:
            update["cumulative"] = cumulative
        return self.model_copy(update=update)

    def stored_document(self) -> dict[str, Any]:
        """The JSON document that is stored (and spooled) for this release.

        The rows, JSON values already, are shared rather than dumped once more (a
        million-cell release is tens of MB)."""
        return {**self.model_dump(mode="json", exclude={"rows", "receipt"}), "rows": self.rows}

    def ledger_output(self) -> dict[str, Any]:
        """The ``release_output`` entry's details (before ``db.releases`` adds its ids):
        the released columns and rows and, with automatic bounds, the choice and what the
        selection released."""
        output: dict[str, Any] = {"columns": self.columns, "rows": self.rows}
        if self.truncation is not None:
            output["truncation"] = self.truncation.model_dump(mode="json")
            output["accuracy"] = self.accuracy.ledger_document()
        if self.accuracy.levels is not None:  # rollup: the bound per level as released
            output["accuracy"] = self.accuracy.ledger_document()
        if self.keys_selected is not None:  # private keys: what the key selection released
            output["keys_selected"] = self.keys_selected
            output["threshold"] = self.threshold
            output["delta"] = self.delta
        if self.bounds_chosen is not None:
            selection = self._selection
            output.update(
                {
                    "bounds_chosen": self.bounds_chosen.model_dump(mode="json"),
                    "mechanism": self.mechanism,
                    "noise_scale": self.noise_scale,
                    "accuracy": self.accuracy.ledger_document(),
                    "opendp_privacy_loss": self._opendp_loss,
                    "selection": selection.model_dump(mode="json") if selection else None,
                }
            )
        return output


class PlannedRelease(BaseModel):
    """A query as planned, from public metadata only: what it costs, how it is computed."""

    model_config = ConfigDict(frozen=True)
    dataset: str
    statistic: str
    columns: list[str]
    query: dict[str, Any]
    cost: Cost
    mechanism: str
    noise_scale: float
    accuracy: Accuracy
    opendp_privacy_loss: float
    epsilon_delta: EpsilonDelta | None
    bounds: Bounds
    auto: AutoBounds | None
    truncation_cost: Amount | None
    threshold: int | None = None
    delta: float | None = None
    period: ChargedPeriod | None = None

    @classmethod
    def of(cls, plan: Plan, dataset: str) -> PlannedRelease:
        """The description of ``plan`` on ``dataset``."""
        return cls(
            dataset=dataset,
            statistic=plan.canonical["statistic"],
            columns=plan.columns,
            query=plan.canonical,
            cost=PrivacyAmount(plan.model, plan.cost),
            mechanism=plan.mechanism,
            noise_scale=plan.noise_scale,
            accuracy=Accuracy.of(plan.accuracy),
            opendp_privacy_loss=plan.opendp_loss,
            epsilon_delta=EpsilonDelta.of(plan),
            bounds=Bounds.model_validate(plan.bounds_used),
            auto=AutoBounds.of(plan),
            truncation_cost=(
                PrivacyAmount(plan.model, plan.truncation.cost)
                if plan.truncation is not None
                else None
            ),
            threshold=plan.key_selection.threshold if plan.key_selection else None,
            delta=plan.key_selection.delta if plan.key_selection else None,
        )

    def ledger_details(self, file_sha256: str) -> dict[str, Any]:
        """The ``release`` entry's details (before ``db`` adds the release id), ledgered
        before any data is read: with automatic bounds, the split and the candidates."""
        details: dict[str, Any] = {
            "query": self.query,
            "mechanism": self.mechanism,
            "noise_scale": self.noise_scale,
            "accuracy": self.accuracy.ledger_document(),
            "opendp_privacy_loss": self.opendp_privacy_loss,
            "bounds": self.bounds.model_dump(mode="json"),
        }
        if self.auto is not None:
            details["auto"] = self.auto.model_dump(mode="json")
        if self.truncation_cost is not None:
            details["truncation_cost"] = self.truncation_cost.unit_document()
        if self.threshold is not None:  # private keys: OpenDP's key selection
            details["key_selection"] = {"threshold": self.threshold, "delta": self.delta}
        details["file_sha256"] = file_sha256
        if self.period is not None:
            details["period"] = self.period.model_dump(mode="json")
        return details

    def in_period(self, period: ChargedPeriod | None) -> PlannedRelease:
        """This plan charged in ``period`` (None: a budget without periods)."""
        return self if period is None else self.model_copy(update={"period": period})

    def preview(
        self,
        remaining: PrivacyAmount,
        cap_remaining: PrivacyAmount | None = None,
        cumulative: Cumulative | None = None,
    ) -> QueryPreview:
        """The preview: this plan, what remains (of the budget and under the dataset's cap)
        and whether it fits both, as the debit would check."""
        return QueryPreview(
            dataset=self.dataset,
            statistic=self.statistic,
            columns=self.columns,
            query=self.query,
            cost=self.cost,
            mechanism=self.mechanism,
            noise_scale=self.noise_scale,
            accuracy=self.accuracy,
            epsilon_delta=self.epsilon_delta,
            budget_remaining=remaining,
            fits_budget=self.cost <= remaining
            and (cap_remaining is None or self.cost <= cap_remaining),
            dataset_cap_remaining=cap_remaining,
            bounds=self.bounds,
            auto=self.auto,
            truncation_cost=self.truncation_cost,
            threshold=self.threshold,
            delta=self.delta,
            period=self.period,
            cumulative=cumulative,
        )

    def released(
        self,
        result: ReleaseResult,
        *,
        release_id: str,
        ledger_seq: int,
        remaining: PrivacyAmount,
        cumulative: Cumulative | None = None,
    ) -> QueryResponse:
        """The fresh answer: this plan with what :func:`privacy.execute` released (with
        automatic bounds, the statistic's noise and accuracy at the bounds chosen)."""
        response = QueryResponse(
            id=release_id,
            dataset=self.dataset,
            statistic=self.statistic,
            columns=self.columns,
            rows=result.rows,
            cost=self.cost,
            mechanism=result.mechanism,
            noise_scale=result.noise_scale,
            accuracy=Accuracy.of(result.accuracy),
            epsilon_delta=self.epsilon_delta,
            budget_remaining=remaining,
            cached=False,
            ledger_seq=ledger_seq,
            query=self.query,
            bounds=self.bounds,
            bounds_chosen=(
                BoundsChosen.model_validate(result.bounds_chosen)
                if result.bounds_chosen is not None
                else None
            ),
            auto=self.auto,
            truncation=Truncation.of(result.truncation) if result.truncation else None,
            keys_selected=result.keys_selected,
            threshold=self.threshold if result.keys_selected is not None else None,
            delta=self.delta if result.keys_selected is not None else None,
            period=self.period,
            cumulative=cumulative,
            created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        )
        response._opendp_loss = result.opendp_loss
        if result.selection is not None:
            response._selection = SelectionRecord.model_validate(result.selection)
        return response
