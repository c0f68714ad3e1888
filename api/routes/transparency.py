"""The ledger's signed checkpoints, proofs and witnesses' cosignatures."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from api.deps import AdminOrAuditor, AnyRole, Auditor, DbDep, LogDep
from api.openapi import problems
from api.schemas import (
    CheckpointSummary,
    ConsistencyProof,
    CosignatureAccepted,
    CosignatureSubmission,
    InclusionProof,
    Page,
)
from api.services import Actor
from api.services import transparency as service

router = APIRouter(prefix="/v1/ledger", tags=["ledger (admin, auditor)"])
MAX_SIZE = 2**63 - 1
_TEXT: dict[str, object] = {"content": {"text/plain": {"schema": {"type": "string"}}}}


@router.get("/key", response_class=Response, responses={200: _TEXT, **problems(401)})
def verifier_key(_: AnyRole, log: LogDep) -> PlainTextResponse:
    """The verifier key of the ledger's checkpoints (C2SP signed-note vkey:
    `<origin>+<hex key ID>+base64(0x01 ‖ Ed25519 public key)`). Pin it out of band.
    Roles: admin, auditor, analyst."""
    return PlainTextResponse(log.vkey + "\n")


@router.get(
    "/checkpoint",
    response_class=Response,
    responses={200: _TEXT, **problems(401, 403, 422)},
)
def checkpoint(
    _: AdminOrAuditor,
    db: DbDep,
    log: LogDep,
    size: int | None = Query(default=None, ge=1, le=MAX_SIZE, description="default: now"),
) -> PlainTextResponse:
    """The signed checkpoint of the ledger's Merkle tree (C2SP tlog-checkpoint in a
    signed note: origin, tree size, base64 root), followed by the witnesses'
    cosignatures stored for that size. Roles: admin, auditor."""
    return PlainTextResponse(service.checkpoint(db, log, size))


@router.get(
    "/checkpoints", response_model=Page[CheckpointSummary], responses=problems(401, 403, 422)
)
def checkpoints(
    _: AdminOrAuditor,
    db: DbDep,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: str | None = Query(default=None, max_length=20, pattern="^[0-9]{1,19}$"),
) -> Page[CheckpointSummary]:
    """The checkpoints served or cosigned so far, newest first, and who cosigned each.
    Roles: admin, auditor."""
    return service.history(db, before=int(cursor) if cursor else None, limit=limit)


@router.get("/proofs/inclusion", response_model=InclusionProof, responses=problems(401, 422))
def inclusion_proof(
    _: AnyRole,
    db: DbDep,
    index: int = Query(ge=0, le=MAX_SIZE, description="leaf index: the entry's seq − 1"),
    size: int = Query(ge=1, le=MAX_SIZE, description="tree size of a checkpoint"),
) -> InclusionProof:
    """RFC 9162 inclusion proof of the entry with seq `index + 1` in the tree of `size`
    leaves. Roles: admin, auditor, analyst."""
    return service.inclusion(db, index, size)


@router.get(
    "/proofs/consistency",
    response_model=ConsistencyProof,
    response_model_by_alias=True,
    responses=problems(401, 422),
)
def consistency_proof(
    _: AnyRole,
    db: DbDep,
    old: int = Query(alias="from", ge=1, le=MAX_SIZE, description="the older tree size"),
    new: int = Query(alias="to", ge=1, le=MAX_SIZE, description="the newer tree size"),
) -> ConsistencyProof:
    """RFC 9162 consistency proof: the tree of `from` leaves is a prefix of the tree of
    `to` leaves. Roles: admin, auditor, analyst."""
    return service.consistency(db, old, new)


@router.post(
    "/cosignatures",
    status_code=201,
    response_model=CosignatureAccepted,
    responses=problems(
        401,
        403,
        409,
        413,
        422,
        notes={
            409: "The checkpoint is not this ledger's at its size (`checkpoint-mismatch`: "
            "the witness saw another history), or another auditor holds the witness name "
            "(`conflict`)."
        },
    ),
)
def add_cosignature(
    auditor: Auditor, db: DbDep, log: LogDep, body: CosignatureSubmission
) -> CosignatureAccepted:
    """Store a witness's C2SP tlog-cosignature of one of this ledger's checkpoints (one the
    witness checked for consistency with the last one it cosigned); it is served with the
    checkpoint at that size from now on. Roles: auditor."""
    return service.add_cosignature(db, log, Actor.of(auditor), body)
