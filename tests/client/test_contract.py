"""Every client method against the real server (in-process, not a mock): the admin's, the
auditor's and the analyst's calls, each checked to reach its operation
(``tests/client/test_models.py``'s ``METHODS``)."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from ruis_client import (
    Conflict,
    Forbidden,
    InvalidQuery,
    NotFound,
    PandasMissing,
    Ruis,
    ServerError,
    Unauthorized,
)
from ruis_client._receipts import entry_hash
from tests.client.test_models import METHODS
from tests.conftest import ADMIN_KEY, Service
from tests.factories import DAYS, MUNICIPALITIES, events_metadata, write_events
from tests.support.api import create_consumer, register_events, set_budget
from tlog import merkle, note

ADMIN_OPERATIONS = {
    "POST /v1/consumers",
    "GET /v1/consumers",
    "POST /v1/consumers/{name}/keys",
    "GET /v1/consumers/{name}/keys",
    "DELETE /v1/consumers/{name}/keys/{key_id}",
    "GET /v1/consumers/{name}/limits",
    "PUT /v1/consumers/{name}/limits",
    "POST /v1/datasets",
    "GET /v1/datasets/{name}",
    "POST /v1/datasets/{name}/versions",
    "POST /v1/datasets/{name}/retire",
    "POST /v1/datasets/{name}/reinstate",
    "PUT /v1/budgets/{consumer}/{dataset}",
    "GET /v1/budgets",
    "GET /readyz",
}
AUDITOR_OPERATIONS = {
    "GET /v1/ledger",
    "GET /v1/ledger/verify",
    "GET /v1/ledger/export",
    "GET /v1/ledger/checkpoint",
    "GET /v1/ledger/checkpoints",
    "GET /v1/ledger/key",
    "GET /v1/ledger/proofs/inclusion",
    "GET /v1/ledger/proofs/consistency",
    "POST /v1/ledger/cosignatures",
}
ANALYST_OPERATIONS = {
    "GET /healthz",
    "GET /v1/datasets",
    "GET /v1/budgets",
    "POST /v1/queries/preview",
    "POST /v1/queries",
    "GET /v1/queries",
    "GET /v1/queries/{release_id}",
    "GET /v1/datasets/{name}",
}


def _pattern(operation: str) -> tuple[str, re.Pattern[str]]:
    method, path = operation.split(" ")
    return method, re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")


PATTERNS = {operation: _pattern(operation) for operation in METHODS}


class Recorder(httpx.BaseTransport):
    """Passes every request to the app and records the operations it called."""

    def __init__(self, target: httpx.BaseTransport) -> None:
        self.target = target
        self.operations: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        for operation, (method, path) in PATTERNS.items():
            if request.method == method and path.match(request.url.path):
                self.operations.add(operation)
        return self.target.handle_request(request)


@pytest.fixture
def recorder(server: Service) -> Recorder:
    assert server.transport is not None  # the in-process app
    return Recorder(server.transport)


def _as(recorder: Recorder, key: str) -> Ruis:
    return Ruis("http://testserver", key, transport=recorder)


@pytest.fixture
def boss(recorder: Recorder) -> Iterator[Ruis]:
    """The bootstrap admin's client."""
    with _as(recorder, ADMIN_KEY) as ruis:
        yield ruis


def test_the_tests_cover_every_operation() -> None:
    assert set(METHODS) == ADMIN_OPERATIONS | AUDITOR_OPERATIONS | ANALYST_OPERATIONS


def test_admin_operations(server: Service, boss: Ruis, recorder: Recorder) -> None:
    data_dir = server.settings.data_dir
    write_events(data_dir)
    registered = boss.register_dataset(events_metadata(max_rows=1800))
    assert (registered.name, registered.path, registered.status) == (
        "events",
        "events.parquet",
        "active",
    )
    assert registered.max_rows == 1800 and registered.delta > 0
    assert [v.version for v in registered.versions] == [1] and registered.versions[0].sha256
    assert registered.file is not None  # admins see the fingerprint
    assert boss.dataset("events").created_at == registered.created_at

    created = boss.create_consumer("ana", "analyst")
    assert created.role == "analyst" and created.api_key and "api_key" not in repr(created)
    assert "ana" in {c.name for c in boss.consumers()}
    with pytest.raises(Conflict):
        boss.create_consumer("ana")
    [first] = boss.keys("ana")
    assert first.id == created.key_id and first.revoked_at is None
    issued = boss.issue_key("ana")
    assert issued.api_key.startswith(issued.prefix)
    assert {k.id for k in boss.keys("ana")} == {created.key_id, issued.id}
    revoked = boss.revoke_key("ana", issued.id)
    assert revoked.id == issued.id and revoked.revoked_at is not None
    with _as(recorder, issued.api_key) as stale, pytest.raises(Unauthorized):
        stale.datasets()

    budget = boss.set_budget("ana", "events", epsilon=1)
    assert (budget.consumer, budget.dataset, budget.total, budget.unit) == (
        "ana",
        "events",
        1,
        "epsilon",
    )
    [listed] = boss.budgets(consumer="ana", dataset="events")
    assert listed.total == 1 and listed.spent == 0
    boss.create_consumer("bob")
    monthly = boss.set_budget(
        "bob", "events", epsilon=2, period={"column": "day", "every": "month"}
    )
    assert monthly.period == {"column": "day", "every": "month"} and monthly.total == 2
    with pytest.raises(ValueError, match="exactly one"):
        boss.set_budget("ana", "events", epsilon=1, rho=1)
    with pytest.raises(NotFound):
        boss.set_budget("nobody", "events", epsilon=1)

    limits = boss.limits("ana")
    assert limits.consumer == "ana" and limits.overrides == {}
    changed = boss.set_limits("ana", max_cells=500, min_epsilon=0.001)
    assert changed.overrides == {"max_cells": 500, "min_epsilon": 0.001}
    assert changed.effective.max_cells == 500 and boss.limits("ana").effective.max_cells == 500
    assert boss.set_limits("ana").overrides == {}  # replaced: back to the defaults

    # a changed file suspends the dataset; reinstating re-checks it
    with _as(recorder, created.api_key) as ana:
        write_events(data_dir, devices=301)  # more rows than max_rows
        with pytest.raises(ServerError) as unavailable:  # refused, nothing charged
            ana.query("events", "count", epsilon=0.1)
        assert unavailable.value.problem.type == "dataset-unavailable"
        assert boss.dataset("events").status == "suspended"
        ready = boss.ready()
        assert ready.status == "degraded" and ready.checks["datasets"] == "1 suspended"
        with pytest.raises(InvalidQuery, match="max_rows"):
            boss.reinstate_dataset("events")
        write_events(data_dir)
        assert boss.reinstate_dataset("events").status == "active"
        assert ana.preview("events", "count", epsilon=0.1).fits_budget

    write_events(data_dir, seed=8, name="events-v2.parquet")
    grown = boss.add_dataset_version("events", "events-v2.parquet", max_rows=2000)
    assert grown.version == 2 and [v.path for v in grown.versions][-1] == "events-v2.parquet"
    assert grown.max_rows == 2000
    retired = boss.retire_dataset("events")
    assert retired.status == "retired" and retired.retired_at is not None
    with pytest.raises(Conflict):
        boss.retire_dataset("events")
    assert recorder.operations >= ADMIN_OPERATIONS


def test_auditor_operations(server: Service, admin: httpx.Client, recorder: Recorder) -> None:
    register_events(server, admin)
    ana_key = create_consumer(admin, "ana")
    set_budget(admin, "ana", amount=5.0)
    olga_key = create_consumer(admin, "olga", "auditor")
    before = datetime.now(UTC) - timedelta(seconds=1)
    with _as(recorder, ana_key) as ana:
        ana.query("events", "count", group_by=["day"], epsilon=0.1)
        ana.query("events", "unit_count", group_by=["municipality"], epsilon=0.2)
        with pytest.raises(Forbidden):
            ana.verify_ledger()
    olga = _as(recorder, olga_key)

    entries = list(olga.ledger(page_size=2))  # several pages
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
    newest = [e.seq for e in olga.ledger(page_size=2, newest_first=True)]
    assert newest == [e.seq for e in entries][::-1]
    assert all(entry_hash(e.document) == e.hash for e in entries)
    assert all(later.prev_hash == earlier.hash for earlier, later in itertools.pairwise(entries))
    releases = list(olga.ledger(consumer="ana", kind="release"))
    assert [e.cost for e in releases] == [
        {"model": "pure", "epsilon": 0.1},
        {"model": "pure", "epsilon": 0.2},
    ]
    assert list(olga.ledger(since=before, until=datetime.now(UTC) + timedelta(seconds=1)))
    assert not list(olga.ledger(until=before - timedelta(days=1)))
    page = olga.ledger_page(limit=1)
    assert [e.seq for e in page.items] == [1] and page.next_cursor
    assert [e.seq for e in olga.ledger_page(limit=1, cursor=page.next_cursor).items] == [2]

    verification = olga.verify_ledger()
    assert verification.valid and verification.chain_valid and verification.tree_valid
    assert verification.entries == len(entries) and verification.first_bad_seq is None

    exported = [json.loads(line) for line in olga.export_ledger()]
    assert exported == [e.document for e in entries]
    csv = list(olga.export_ledger(format="csv", kind="release"))
    assert csv[0].startswith("seq,") and len(csv) == 3
    with pytest.raises(InvalidQuery):
        olga.export_ledger(since="not a time")  # raised before any line

    size = len(entries)
    now = olga.checkpoint()
    assert now.size == size and "\n\n" in now.note
    first = olga.checkpoint(size=1)
    assert first.size == 1
    key = note.Verifier.parse(olga.fetch_ledger_key())
    assert key.vkey == admin.get("/v1/ledger/key").text.strip()
    note.Note.parse(now.note).signed_by(key)  # the ledger's signature

    last = entries[-1]
    inclusion = olga.inclusion_proof(last.seq - 1, size)
    assert (inclusion.index, inclusion.size) == (last.seq - 1, size)
    leaf = merkle.leaf_hash(bytes.fromhex(last.hash))
    proof = [base64.b64decode(h) for h in inclusion.hashes]
    merkle.verify_inclusion(last.seq - 1, size, leaf, proof, now.root)
    consistency = olga.consistency_proof(1, size)
    assert (consistency.old, consistency.new) == (1, size)
    hashes = [base64.b64decode(h) for h in consistency.hashes]
    merkle.verify_consistency(1, size, first.root, now.root, hashes)
    with pytest.raises(InvalidQuery):
        olga.consistency_proof(size, size + 5)  # past the end

    witness = note.generate("witness-olga", note.COSIGNATURE_V1)
    served = note.Note.parse(now.note)
    point = note.Checkpoint.parse(served.text)
    cosignature = note.cosign(point.text, witness, int(time.time()))
    cosigned = note.Note(served.text, (*served.signatures, cosignature)).render()
    accepted = olga.add_cosignature(witness.verifier.vkey, cosigned)
    assert (accepted.size, accepted.witness) == (size, witness.verifier.vkey)
    history = olga.checkpoints()
    assert history[0].size == size and history[0].witnesses == ("witness-olga",)
    assert history[0].root_bytes == now.root
    assert "witness-olga" in olga.checkpoint().note  # served with it from now on

    assert olga.limits("ana").consumer == "ana"  # auditors read limits
    with pytest.raises(Forbidden):
        olga.set_limits("ana", max_cells=5)
    assert [b.consumer for b in olga.budgets()] == ["ana"]
    olga.close()
    assert recorder.operations >= AUDITOR_OPERATIONS


def test_analyst_operations_and_automatic_bounds(
    server: Service, admin: httpx.Client, recorder: Recorder
) -> None:
    """Datasets whose bounds are "auto" list and query; bounds="auto" is sent as "auto"
    (not as a list of letters), auto_share reaches the server, covers is read."""
    register_events(
        server, admin, max_partitions_contributed="auto", max_contributions_per_partition="auto"
    )
    key = create_consumer(admin, "ana")
    set_budget(admin, "ana", amount=3.0)
    with _as(recorder, key) as ana:
        assert ana.health().status == "ok"
        [dataset] = ana.datasets()
        assert (
            dataset.max_partitions_contributed == "auto" == dataset.max_contributions_per_partition
        )
        assert ana.dataset("events").file is None  # analysts: no fingerprint
        [budget] = ana.budgets()
        assert budget.consumer == "ana" and ana.budget("events") == budget

        preview = ana.preview(
            "events",
            "sum",
            column="dwell_minutes",
            group_by=["day"],
            bounds="auto",
            auto_share=0.2,
            epsilon=0.5,
        )
        assert preview.query["bounds"] == "auto"
        assert preview.auto is not None and preview.auto["share"] == 0.2  # auto_share
        assert preview.accuracy.error_bound_range is not None
        assert preview.bounds["clamp"] == "auto"
        release = ana.query(
            "events",
            "sum",
            column="dwell_minutes",
            group_by=["day"],
            bounds="auto",
            auto_share=0.2,
            epsilon=0.5,
        )
        assert release.bounds_chosen is not None and release.bounds_chosen["clamp"][0] == 0
        assert release.accuracy.covers == "noise"  # a sum's bound: the noise on clamped data
        half = (release.frame["upper"] - release.frame["lower"]) / 2
        assert (half - (release.accuracy.error_bound or 0)).abs().max() < 1e-9
        assert release.frame.columns == ["day", "value", "lower", "upper"]
        assert release.frame["day"].to_list() == [d.isoformat() for d in DAYS]
        assert (release.frame["lower"] <= release.frame["value"]).all()
        assert (release.frame["value"] < release.frame["upper"]).all()

        median = ana.query(
            "events",
            "quantile",
            column="hour",
            q=0.5,
            bounds=(0, 23),
            max_partitions_contributed=1,
            max_contributions_per_partition=1,
            epsilon=0.3,
        )
        assert median.accuracy.error_bound is None and median.accuracy.rank_error_bound
        assert median.frame.columns == ["value", "lower", "upper"]
        assert median.frame["lower"].null_count() == 1  # an error in ranks, not in hours

        visitors = ana.query(
            "events",
            "unit_count",
            group_by=["municipality"],
            max_partitions_contributed=2,
            epsilon=0.2,
        )
        assert visitors.query["max_partitions_contributed"] == 2
        assert visitors.accuracy.covers == "noise_and_bias"  # what the bounds drop, too
        assert (visitors.frame["upper"] - visitors.frame["value"]).min() > (
            visitors.frame["value"] - visitors.frame["lower"]
        ).max()  # the bias only lowers a count: the interval reaches further up
        assert visitors.frame["municipality"].to_list() == MUNICIPALITIES
        assert {r.id for r in ana.releases()} == {release.id, median.id, visitors.id}
        assert ana.release(release.id).frame.equals(release.frame)
        if _has_pandas():
            assert list(release.to_pandas().columns) == release.frame.columns
        else:
            with pytest.raises(PandasMissing, match=r'pip install "ruis-client\[pandas\]"'):
                release.to_pandas()
        with pytest.raises(ValueError, match="auto"):
            ana.preview("events", "sum", column="dwell_minutes", bounds="aut", epsilon=0.1)  # type: ignore[arg-type]
    assert recorder.operations >= ANALYST_OPERATIONS


def _has_pandas() -> bool:
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True
