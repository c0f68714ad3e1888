"""What the admin's and the auditor's calls return: consumers, keys, limits, the ledger,
its checkpoints and proofs (see :mod:`ruis_client._models` for how each names its schema)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, cast

from ruis_client._models import LOCAL, Role, Schema, _optional_time, _time


@dataclass(frozen=True)
class Consumer:
    """A consumer of the service: an analyst, an admin or an auditor."""

    _schema: ClassVar[Schema] = Schema("ConsumerPublic")
    id: int
    name: str
    role: Role
    created_at: datetime

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Consumer:
        """From an item of ``GET /v1/consumers``."""
        return cls(
            id=int(document["id"]),
            name=str(document["name"]),
            role=cast(Role, document["role"]),
            created_at=_time(document["created_at"]),
        )


@dataclass(frozen=True)
class ConsumerCreated:
    """A new consumer and its first API key: ``api_key`` is shown this once (hand it over,
    do not log it); ``key_id`` names the key (to revoke it)."""

    _schema: ClassVar[Schema] = Schema("ConsumerCreated")
    id: int
    name: str
    role: Role
    created_at: datetime
    api_key: str = field(repr=False)
    key_id: str

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ConsumerCreated:
        """From the answer of ``POST /v1/consumers``."""
        return cls(
            id=int(document["id"]),
            name=str(document["name"]),
            role=cast(Role, document["role"]),
            created_at=_time(document["created_at"]),
            api_key=str(document["api_key"]),
            key_id=str(document["key_id"]),
        )


@dataclass(frozen=True)
class ApiKey:
    """One of a consumer's API keys, never its secret: ``id``, the ``prefix`` it starts
    with, when it was made and, once revoked, when."""

    _schema: ClassVar[Schema] = Schema("KeyPublic")
    id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ApiKey:
        """From an item of ``GET /v1/consumers/{name}/keys``."""
        return cls(
            id=str(document["id"]),
            prefix=str(document["prefix"]),
            created_at=_time(document["created_at"]),
            revoked_at=_optional_time(document.get("revoked_at")),
        )


@dataclass(frozen=True)
class NewApiKey:
    """A key just issued: ``api_key`` is its secret, shown this once."""

    _schema: ClassVar[Schema] = Schema("KeyCreated")
    id: str
    prefix: str
    created_at: datetime
    api_key: str = field(repr=False)
    revoked_at: datetime | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> NewApiKey:
        """From the answer of ``POST /v1/consumers/{name}/keys``."""
        return cls(
            id=str(document["id"]),
            prefix=str(document["prefix"]),
            created_at=_time(document["created_at"]),
            api_key=str(document["api_key"]),
            revoked_at=_optional_time(document.get("revoked_at")),
        )


@dataclass(frozen=True)
class EffectiveLimits:
    """The limits in effect for a consumer: the smallest cost it may ask (ε, ρ), the most
    cells per release, concurrent queries, requests per minute and their burst."""

    _schema: ClassVar[Schema] = Schema("EffectiveLimitsPublic")
    min_epsilon: float
    min_rho: float
    max_cells: int
    max_concurrent: int
    requests_per_minute: int
    burst: int

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> EffectiveLimits:
        """From a limits document's ``effective``."""
        return cls(
            min_epsilon=float(document["min_epsilon"]),
            min_rho=float(document["min_rho"]),
            max_cells=int(document["max_cells"]),
            max_concurrent=int(document["max_concurrent"]),
            requests_per_minute=int(document["requests_per_minute"]),
            burst=int(document["burst"]),
        )


@dataclass(frozen=True)
class Limits:
    """A consumer's limits: its ``overrides`` of the deployment's defaults (only those
    set) and the limits in ``effective``."""

    _schema: ClassVar[Schema] = Schema("ConsumerLimitsPublic")
    consumer: str
    overrides: Mapping[str, Any]
    effective: EffectiveLimits

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Limits:
        """From the answer of ``GET`` or ``PUT /v1/consumers/{name}/limits``."""
        overrides = document["overrides"] or {}
        return cls(
            consumer=str(document["consumer"]),
            overrides={k: v for k, v in overrides.items() if v is not None},
            effective=EffectiveLimits.from_document(document["effective"]),
        )


@dataclass(frozen=True)
class LedgerEntry:
    """One entry of the hash-chained ledger. ``hash`` is the SHA-256 of the canonical JSON
    of :attr:`document` without ``hash``; ``prev_hash`` chains it to the one before.
    :attr:`document` is the entry exactly as served (what a verifier hashes)."""

    _schema: ClassVar[Schema] = Schema("LedgerEntryPublic")
    seq: int
    time: datetime
    kind: str
    actor: str
    consumer: str | None
    dataset: str | None
    cost: Mapping[str, Any] | None
    request_id: str | None
    details: Mapping[str, Any] = field(repr=False)
    prev_hash: str = field(repr=False)
    hash: str = field(repr=False)
    document: Mapping[str, Any] = field(repr=False, metadata=LOCAL)
    key_id: str | None = None
    """The API key the entry was made with (None where there was none)."""

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LedgerEntry:
        """From an item of ``GET /v1/ledger`` or a line of its export (JSONL)."""
        return cls(
            seq=int(document["seq"]),
            time=_time(document["time"]),
            kind=str(document["kind"]),
            actor=str(document["actor"]),
            consumer=document["consumer"],
            dataset=document["dataset"],
            cost=document["cost"],
            request_id=document["request_id"],
            details=document["details"],
            prev_hash=str(document["prev_hash"]),
            hash=str(document["hash"]),
            document=dict(document),
            key_id=document.get("key_id"),
        )


@dataclass(frozen=True)
class LedgerPage:
    """One page of ledger entries, oldest first; ``next_cursor`` continues it (None on the
    last page)."""

    _schema: ClassVar[Schema] = Schema("Page_LedgerEntryPublic_")
    items: tuple[LedgerEntry, ...]
    next_cursor: str | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LedgerPage:
        """From the answer of ``GET /v1/ledger``."""
        return cls(
            items=tuple(LedgerEntry.from_document(e) for e in document["items"]),
            next_cursor=document.get("next_cursor"),
        )


@dataclass(frozen=True)
class LedgerDiscrepancy:
    """Something the ledger and the stored state disagree on (``kind`` and ``detail``)."""

    _schema: ClassVar[Schema] = Schema("LedgerDiscrepancy")
    kind: str
    detail: str
    consumer: str | None = None
    dataset: str | None = None
    release_id: str | None = None
    ledgered: float | None = None
    spent: float | None = None
    total: float | None = None

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LedgerDiscrepancy:
        """From an item of a verification's ``discrepancies``."""
        return cls(
            kind=str(document["kind"]),
            detail=str(document["detail"]),
            consumer=document.get("consumer"),
            dataset=document.get("dataset"),
            release_id=document.get("release_id"),
            ledgered=document.get("ledgered"),
            spent=document.get("spent"),
            total=document.get("total"),
        )


@dataclass(frozen=True)
class LedgerVerification:
    """The server's check of its own ledger: the hash chain (``chain_valid``,
    ``first_bad_seq``), the stored Merkle tree (``tree_valid``), every checkpoint served
    (``checkpoints_valid``), and budgets, caps and releases reconciled with the entries
    (``reconciled``, ``discrepancies``); ``valid`` when all hold. An outside check of the
    same needs an earlier checkpoint (``ruis verify``)."""

    _schema: ClassVar[Schema] = Schema("LedgerVerification")
    valid: bool
    entries: int
    chain_valid: bool = True
    first_bad_seq: int | None = None
    head: str | None = None
    root: str | None = None
    tree_valid: bool = True
    tree_first_bad_seq: int | None = None
    checkpoints_valid: bool = True
    checkpoint_first_bad_size: int | None = None
    reconciled: bool = True
    discrepancies: tuple[LedgerDiscrepancy, ...] = ()
    discrepancy_count: int = 0

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LedgerVerification:
        """From the answer of ``GET /v1/ledger/verify``."""
        return cls(
            valid=bool(document["valid"]),
            entries=int(document["entries"]),
            chain_valid=bool(document.get("chain_valid", True)),
            first_bad_seq=document.get("first_bad_seq"),
            head=document.get("head"),
            root=document.get("root"),
            tree_valid=bool(document.get("tree_valid", True)),
            tree_first_bad_seq=document.get("tree_first_bad_seq"),
            checkpoints_valid=bool(document.get("checkpoints_valid", True)),
            checkpoint_first_bad_size=document.get("checkpoint_first_bad_size"),
            reconciled=bool(document.get("reconciled", True)),
            discrepancies=tuple(
                LedgerDiscrepancy.from_document(d) for d in document.get("discrepancies") or ()
            ),
            discrepancy_count=int(document.get("discrepancy_count", 0)),
        )


@dataclass(frozen=True)
class CheckpointSummary:
    """A checkpoint the server served or a witness cosigned: its tree ``size``, ``root``
    (base64), when it was first served and the witnesses that cosigned it."""

    _schema: ClassVar[Schema] = Schema("CheckpointSummary")
    size: int
    root: str
    first_served: datetime
    witnesses: tuple[str, ...]

    @property
    def root_bytes(self) -> bytes:
        """The root hash."""
        return base64.b64decode(self.root)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> CheckpointSummary:
        """From an item of ``GET /v1/ledger/checkpoints``."""
        return cls(
            size=int(document["size"]),
            root=str(document["root"]),
            first_served=_time(document["first_served"]),
            witnesses=tuple(document["witnesses"]),
        )


@dataclass(frozen=True)
class InclusionProof:
    """RFC 9162 inclusion proof (base64 hashes) of leaf ``index`` (the entry with seq
    ``index + 1``) in the tree of ``size`` leaves."""

    _schema: ClassVar[Schema] = Schema("InclusionProof")
    index: int
    size: int
    hashes: tuple[str, ...]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> InclusionProof:
        """From the answer of ``GET /v1/ledger/proofs/inclusion``."""
        return cls(int(document["index"]), int(document["size"]), tuple(document["hashes"]))


@dataclass(frozen=True)
class ConsistencyProof:
    """RFC 9162 consistency proof (base64 hashes): the tree of ``old`` leaves is a prefix of
    the tree of ``new`` leaves."""

    _schema: ClassVar[Schema] = Schema(
        "ConsistencyProof", read_as={"old": ("from",), "new": ("to",)}
    )
    old: int
    new: int
    hashes: tuple[str, ...]

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> ConsistencyProof:
        """From the answer of ``GET /v1/ledger/proofs/consistency``."""
        return cls(int(document["from"]), int(document["to"]), tuple(document["hashes"]))


@dataclass(frozen=True)
class CosignatureAccepted:
    """A witness's cosignature the server stored: served with the checkpoint of ``size``
    from now on."""

    _schema: ClassVar[Schema] = Schema("CosignatureAccepted")
    size: int
    root: str
    witness: str
    timestamp: int

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> CosignatureAccepted:
        """From the answer of ``POST /v1/ledger/cosignatures``."""
        return cls(
            size=int(document["size"]),
            root=str(document["root"]),
            witness=str(document["witness"]),
            timestamp=int(document["timestamp"]),
        )


@dataclass(frozen=True)
class Health:
    """``ok``, ``degraded`` or ``unavailable``, and each check's state (readiness)."""

    _schema: ClassVar[Schema] = Schema("Health")
    status: str
    checks: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Health:
        """From the answer of ``GET /healthz`` or ``GET /readyz``."""
        return cls(status=str(document["status"]), checks=dict(document.get("checks") or {}))
