"""What the ledger's receipts and Merkle tree cost (issue 15).

    .venv/bin/python -m bench.receipts                 # SQLite, and PostgreSQL when it answers
    .venv/bin/python -m bench.receipts --quick         # shorter runs
    .venv/bin/python -m bench.receipts --skip-appends --backends sqlite --seconds 2

Over HTTP, on the tiny data set, one :mod:`bench.receipt_server` per mode (each its own
fresh database) — ``receipts`` (as shipped), ``no-receipts`` (``get_log`` overridden to
``None``: the same app answering without a receipt) and ``no-tree`` (no receipts and
no tree nodes written: the release path before issue 15) — with ``--concurrency``
keep-alive clients for ``--seconds`` per run: fresh small releases (distinct ε, each
debited), cached re-reads (the same query POSTed again) and re-reads by id
(``GET /v1/queries/{id}``). The modes take turns within each of ``--rounds`` rounds
(the order rotating), so they see the same machine load; the verdict is the median of
the per-round ratios with receipts / without, against the target of at most 10% fewer.

In process: ``db.ledger.append`` per second with the tree and without it
(``db.ledger_tree.append_leaf`` patched out), one append per write transaction and
``--appends`` in one, on a ledger of each of ``--append-sizes`` entries (filled in bulk,
the tree nodes computed as appends would), to show that the cost stays O(log n).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

from sqlalchemy import insert

from bench.data import TINY, BenchData, ensure
from bench.measure import hammer
from bench.queries import SMALL
from bench.receipt_server import MODES
from bench.server import Server, ok_json, postgres_available, postgres_database, serve
from bench.tables import table
from db import ledger, ledger_tree
from db.engine import Database
from db.migrate import upgrade
from db.models import LedgerEntry, LedgerHead, LedgerTreeNode
from tlog import merkle

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_OVERHEAD = 0.10
"""Issue 15: with receipts, at most 10% fewer requests per second than without."""
BASELINE = "no-receipts"
OPERATIONS = {
    "fresh": "fresh small release (distinct ε, debited)",
    "cached_post": "cached re-read (same query POSTed)",
    "reread_get": "re-read (GET /v1/queries/{id})",
}
SERVER_ENV = {
    # The per-consumer token bucket (6,000/min by default) would cap every mode alike at
    # 100/s; the bench measures the work, not the quota.
    "RUIS_REQUESTS_PER_MINUTE": "100000000",
    "RUIS_BURST": "1000000",
}
VARIANTS = ("tree", "no-tree")
WAYS = {"per_transaction": "1 append per write transaction", "one_transaction": "all in one"}


@dataclass(frozen=True)
class ReceiptConfig:
    """What :func:`measure` runs."""

    seconds: float = 5.0
    """Per HTTP run (one mode, one operation, one round)."""
    rounds: int = 3
    concurrency: int = 4
    quantum_ms: int = 0
    """``RUIS_RELEASE_TIME_QUANTUM_MS`` of the servers: 0, so that a fresh release is not
    padded to 100 ms (which would hide the receipt's cost inside the padding)."""
    modes: tuple[str, ...] = MODES
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    append_sizes: tuple[int, ...] = (1000, 100_000)
    appends: int = 1000
    append_reps: int = 3
    skip_http: bool = False
    skip_appends: bool = False


def _log(message: str) -> None:
    print(f"[receipts {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- over HTTP


@dataclass
class _Endpoint:
    """One mode's server and the requests the runs send it."""

    mode: str
    server: Server
    release_id: str
    epsilons: Iterator[Decimal] = field(
        default_factory=lambda: (Decimal("0.02") + i * Decimal("1e-9") for i in itertools.count())
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def has_receipt(self, body: dict[str, Any]) -> bool:
        """Whether ``body`` carries a receipt exactly when this mode should."""
        return (body.get("receipt") is not None) == (self.mode == "receipts")

    def fresh(self, _: int) -> tuple[str, str, Any]:
        with self.lock:
            epsilon = next(self.epsilons)
        return "POST", "/v1/queries", SMALL.body(epsilon)

    def requests(
        self,
    ) -> dict[str, tuple[Callable[[int], tuple[str, str, Any]], Callable[[dict[str, Any]], bool]]]:
        same = SMALL.body(Decimal("0.01"))
        return {
            "fresh": (self.fresh, lambda b: not b.get("cached") and self.has_receipt(b)),
            "cached_post": (
                lambda _: ("POST", "/v1/queries", same),
                lambda b: bool(b.get("cached")) and self.has_receipt(b),
            ),
            "reread_get": (
                lambda _: ("GET", f"/v1/queries/{self.release_id}", None),
                self.has_receipt,
            ),
        }

    def run(self, operation: str, seconds: float, concurrency: int) -> dict[str, Any]:
        """One timed run (:func:`bench.measure.hammer`), with the server process' CPU
        time per request answered."""
        request, check = self.requests()[operation]
        cpu = cpu_seconds(self.server.pid)
        result = hammer(
            self.server.url,
            self.server.analyst_key,
            request,
            check,
            seconds=seconds,
            concurrency=concurrency,
        )
        cpu = cpu_seconds(self.server.pid) - cpu
        result["server_cpu_ms"] = 1000 * cpu / result["completed"] if result["completed"] else None
        return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(stack: ExitStack, tiny: BenchData, backend: str, mode: str, quantum_ms: int) -> Server:
    url = stack.enter_context(postgres_database()) if backend == "postgresql" else None
    env = {**SERVER_ENV, "RUIS_RELEASE_TIME_QUANTUM_MS": str(quantum_ms)}
    program = [sys.executable, "-m", "bench.receipt_server", "--mode", mode]
    server = stack.enter_context(serve(tiny.spec.directory, url, env=env, program=program))
    server.setup([tiny.registration(SMALL.dataset)])
    return server


def http_overhead(tiny: BenchData, backend: str, config: ReceiptConfig) -> dict[str, Any]:
    """Requests per second of each operation in each mode, run in interleaved rounds."""
    with ExitStack() as stack:
        endpoints: list[_Endpoint] = []
        for mode in config.modes:
            server = _start(stack, tiny, backend, mode, config.quantum_ms)
            with server.analyst() as client:
                body = ok_json(client.post("/v1/queries", json=SMALL.body(Decimal("0.01"))))
            endpoint = _Endpoint(mode, server, str(body["id"]))
            if not endpoint.has_receipt(body):
                raise RuntimeError(
                    f"mode {mode}: receipt {'missing' if mode == 'receipts' else 'present'}"
                )
            endpoints.append(endpoint)
        for endpoint in endpoints:  # warm-up: plans, connections, caches (not recorded)
            for operation in OPERATIONS:
                endpoint.run(operation, min(1.0, config.seconds), config.concurrency)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            e.mode: {op: [] for op in OPERATIONS} for e in endpoints
        }
        for round_ in range(config.rounds):
            turn = round_ % len(endpoints)
            order = endpoints[turn:] + endpoints[:turn]
            for operation in OPERATIONS:
                for endpoint in order:
                    _log(
                        f"{backend} round {round_ + 1}/{config.rounds}: "
                        f"{operation}, {endpoint.mode}"
                    )
                    runs[endpoint.mode][operation].append(
                        endpoint.run(operation, config.seconds, config.concurrency)
                    )
    return {"runs": runs, "summary": summarise_http(runs)}


def summarise_http(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """Per operation: each mode's median rate, p50 and errors, and the median of the
    per-round ratios of ``receipts`` to each other mode (with the 10% verdict)."""
    summary: dict[str, Any] = {}
    for operation in OPERATIONS:
        modes: dict[str, Any] = {}
        for mode, by_op in runs.items():
            done = by_op[operation]
            modes[mode] = {
                "per_second": _median([r["per_second"] for r in done]),
                "per_second_runs": [r["per_second"] for r in done],
                "p50_ms": _median([r["p50_ms"] for r in done]),
                "server_cpu_ms": _median(
                    [r["server_cpu_ms"] for r in done if r.get("server_cpu_ms") is not None]
                ),
                "errors": sum(r["errors"] for r in done),
                "first_error": next((r["first_error"] for r in done if r["first_error"]), ""),
            }
        ratios: dict[str, Any] = {}
        if "receipts" in runs:
            for other in runs:
                if other == "receipts":
                    continue
                paired = [
                    a["per_second"] / b["per_second"]
                    for a, b in zip(
                        runs["receipts"][operation], runs[other][operation], strict=True
                    )
                    if b["per_second"] > 0
                ]
                ratio = _median(paired)
                cpu_paired = [
                    a["server_cpu_ms"] / b["server_cpu_ms"]
                    for a, b in zip(
                        runs["receipts"][operation], runs[other][operation], strict=True
                    )
                    if a.get("server_cpu_ms") and b.get("server_cpu_ms")
                ]
                ratios[other] = {
                    "paired_ratios": paired,
                    "cpu_ratio": _median(cpu_paired),
                    "ratio": ratio,
                    "overhead": None if ratio is None else 1 - ratio,
                    "met": None if ratio is None else ratio >= 1 - TARGET_OVERHEAD,
                }
        summary[operation] = {"modes": modes, "receipts_vs": ratios}
    return summary


# ---------------------------------------------------------------- appends in process


def fill(db: Database, size: int, *, with_tree: bool) -> None:
    """Bring the ledger to ``size`` entries in one write transaction, in bulk: chained
    entries with correct hashes and, ``with_tree``, the tree nodes ``ledger.append``
    would have written for them and the head's ``frontier`` (the tree's right edge,
    which later appends build on); without, no nodes and no frontier."""
    with db.write() as session:
        head = session.get(LedgerHead, 1)
        assert head is not None
        if head.seq >= size:
            return
        # the right edge: every left sibling the new leaves need is on it or made by them
        known = ledger_tree.nodes(session, merkle.root_nodes(head.seq)) if with_tree else {}
        entries: list[dict[str, Any]] = []
        new_nodes: list[dict[str, Any]] = []
        prev, time_ = head.hash, ledger.now_iso()
        for seq in range(head.seq + 1, size + 1):
            document: dict[str, Any] = {
                "seq": seq,
                "time": time_,
                "kind": "reread",
                "actor": "bench",
                "consumer": "ana",
                "dataset": "events",
                "cost": None,
                "request_id": f"fill-{seq}",
                "details": {"release_id": f"rel_{seq:024x}"},
                "prev_hash": prev,
            }
            prev = ledger.compute_hash(document)
            entries.append(
                {
                    "seq": seq,
                    "time": time_,
                    "kind": "reread",
                    "actor": "bench",
                    "consumer": "ana",
                    "dataset": "events",
                    "cost_json": None,
                    "request_id": document["request_id"],
                    "details_json": ledger.canonical_json(document["details"]),
                    "prev_hash": document["prev_hash"],
                    "hash": prev,
                    "key_id": None,
                }
            )
            if with_tree:
                leaf = merkle.leaf_hash(bytes.fromhex(prev))
                for (level, idx), value in merkle.appended_nodes(seq - 1, leaf, known.__getitem__):
                    known[(level, idx)] = value
                    new_nodes.append({"pos": ledger_tree.position((level, idx)), "hash": value})
        connection = session.connection()
        for start in range(0, len(entries), 10_000):
            connection.execute(insert(LedgerEntry), entries[start : start + 10_000])
        for start in range(0, len(new_nodes), 20_000):
            connection.execute(insert(LedgerTreeNode), new_nodes[start : start + 20_000])
        head.seq, head.hash = size, prev
        head.frontier = b"".join(known[n] for n in merkle.root_nodes(size)) if with_tree else None
        session.add(head)


def _no_leaf(*_: object) -> None:
    """Stands in for ``db.ledger_tree.append_leaf``: no nodes written, no frontier kept."""
    return None


def _ledger_size(db: Database) -> int:
    with db.read() as session:
        head = session.get(LedgerHead, 1)
        return head.seq if head is not None else 0


def time_appends(db: Database, count: int, *, one_transaction: bool, tree: bool) -> float:
    """Seconds for ``count`` ``ledger.append`` calls, each in its own write transaction or
    all in one; without the tree (``append_leaf`` patched out) unless ``tree``."""
    patch: AbstractContextManager[Any] = (
        nullcontext() if tree else mock.patch.object(ledger_tree, "append_leaf", _no_leaf)
    )

    def append(session: Any, i: int) -> None:
        ledger.append(
            session,
            kind="reread",
            actor="bench",
            consumer="ana",
            dataset="events",
            details={"release_id": f"rel_{i:024x}"},
            request_id=f"bench-{i}",
        )

    with patch:
        began = time.perf_counter()
        if one_transaction:
            with db.write() as session:
                for i in range(count):
                    append(session, i)
        else:
            for i in range(count):
                with db.write() as session:
                    append(session, i)
        return time.perf_counter() - began


@contextmanager
def _databases(backend: str) -> Iterator[dict[str, Database]]:
    with ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ruis-appends-")))
        found: dict[str, Database] = {}
        for variant in VARIANTS:
            url = (
                stack.enter_context(postgres_database())
                if backend == "postgresql"
                else f"sqlite:///{directory / f'{variant}.db'}"
            )
            db = Database(url)
            stack.callback(db.dispose)
            upgrade(db)
            found[variant] = db
        yield found


def append_cost(backend: str, config: ReceiptConfig) -> dict[str, Any]:
    """Appends per second with and without the tree at each of ``config.append_sizes``."""
    sizes: list[dict[str, Any]] = []
    with _databases(backend) as dbs:
        for size in sorted(config.append_sizes):
            _log(f"{backend} appends: filling to {size:,} entries")
            for variant, db in dbs.items():
                fill(db, size, with_tree=variant == "tree")
            start = _ledger_size(dbs["tree"])
            seconds: dict[str, dict[str, list[float]]] = {
                v: {w: [] for w in WAYS} for v in VARIANTS
            }
            written = [  # the leaf and the subtrees it completes
                1 + len(merkle.siblings_needed(i))
                for i in range(start, start + 2 * config.append_reps * config.appends)
            ]
            for rep in range(config.append_reps):
                for way in WAYS:
                    order = VARIANTS if rep % 2 == 0 else VARIANTS[::-1]
                    for variant in order:
                        seconds[variant][way].append(
                            time_appends(
                                dbs[variant],
                                config.appends,
                                one_transaction=way == "one_transaction",
                                tree=variant == "tree",
                            )
                        )
            rates = {
                v: {w: config.appends / statistics.median(s) for w, s in by_way.items()}
                for v, by_way in seconds.items()
            }
            sizes.append(
                {
                    "size": size,
                    "start": start,
                    "end": _ledger_size(dbs["tree"]),
                    "seconds": seconds,
                    "per_second": rates,
                    "tree_vs_no_tree": {w: rates["tree"][w] / rates["no-tree"][w] for w in WAYS},
                    "nodes_written": {"mean": statistics.fmean(written), "max": max(written)},
                }
            )
        with dbs["tree"].snapshot() as session:
            check = ledger.verify(session)
    first, last = sizes[0], sizes[-1]
    return {
        "appends": config.appends,
        "reps": config.append_reps,
        "sizes": sizes,
        "tree_valid": check.valid and check.tree_valid,
        "largest_vs_smallest": {
            w: last["per_second"]["tree"][w] / first["per_second"]["tree"][w] for w in WAYS
        },
    }


# ---------------------------------------------------------------- all, and the report


def measure(config: ReceiptConfig) -> dict[str, Any]:
    """Everything :func:`format_report` prints, per backend (PostgreSQL skipped, with a
    note, when it does not answer on 127.0.0.1:5432)."""
    tiny = ensure(TINY) if not config.skip_http else None
    results: dict[str, Any] = {
        "config": asdict(config),
        "load_before": list(os.getloadavg()),
        "backends": {},
    }
    for backend in config.backends:
        if backend == "postgresql" and not postgres_available():
            results["backends"][backend] = {"skipped": "PostgreSQL not reachable on 127.0.0.1:5432"}
            continue
        measured: dict[str, Any] = {}
        if tiny is not None:
            measured["http"] = http_overhead(tiny, backend, config)
        if not config.skip_appends:
            measured["appends"] = append_cost(backend, config)
        results["backends"][backend] = measured
    results["load_after"] = list(os.getloadavg())
    return results


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:+.1f}%"


def _verdict(met: bool | None) -> str:
    return "n/a" if met is None else ("met" if met else "MISSED")


def format_report(results: dict[str, Any]) -> str:
    """The tables of :func:`measure`'s results."""
    config = results["config"]
    out: list[str] = []
    rows: list[list[str]] = []
    for backend, measured in results["backends"].items():
        if "skipped" in measured:
            rows.append([backend, measured["skipped"], *[""] * 8])
            continue
        http = measured.get("http")
        if not http:
            continue
        for operation, title in OPERATIONS.items():
            summary = http["summary"][operation]
            modes = summary["modes"]
            vs = summary["receipts_vs"]

            def rate(mode: str, modes: dict[str, Any] = modes) -> str:
                m = modes.get(mode)
                if m is None:
                    return "—"
                errors = f" ({m['errors']} err)" if m["errors"] else ""
                return f"{m['per_second']:,.0f}{errors}"

            def cpu(mode: str, modes: dict[str, Any] = modes) -> str:
                m = modes.get(mode)
                return (
                    "—" if m is None or m["server_cpu_ms"] is None else f"{m['server_cpu_ms']:.2f}"
                )

            base = vs.get(BASELINE, {})
            cpu_ratio = base.get("cpu_ratio")
            rows.append(
                [
                    backend,
                    title,
                    rate("receipts"),
                    rate("no-receipts"),
                    rate("no-tree"),
                    _pct(-base["overhead"]) if base.get("overhead") is not None else "—",
                    _pct(-vs["no-tree"]["overhead"]) if "no-tree" in vs else "—",
                    f"≥ −{100 * TARGET_OVERHEAD:.0f}% " + _verdict(base.get("met")),
                    " / ".join(cpu(m) for m in MODES if m in modes),
                    _pct(cpu_ratio - 1) if cpu_ratio is not None else "—",
                ]
            )
    if rows:
        out.append(
            f"== receipts: requests/s with receipts vs without ({config['concurrency']} clients, "
            f"{config['seconds']:g} s per run, {config['rounds']} interleaved rounds, release "
            f"time quantum {config['quantum_ms']} ms; target: with receipts within "
            f"{100 * TARGET_OVERHEAD:.0f}% of without, median of per-round ratios) =="
        )
        out.append(
            "load average before: "
            + " ".join(f"{x:.2f}" for x in results["load_before"])
            + "   after: "
            + " ".join(f"{x:.2f}" for x in results.get("load_after", []))
        )
        out.append(
            table(
                [
                    "backend",
                    "operation",
                    "receipts /s",
                    "no receipts /s",
                    "no tree /s",
                    "vs no receipts",
                    "vs no tree",
                    "target",
                    "server CPU ms/req (r / nr / nt)",
                    "CPU vs nr",
                ],
                rows,
            )
        )
    append_rows: list[list[str]] = []
    for backend, measured in results["backends"].items():
        appends = measured.get("appends")
        if not appends:
            continue
        for at in appends["sizes"]:
            for way, title in WAYS.items():
                rates = at["per_second"]
                append_rows.append(
                    [
                        backend,
                        f"{at['start']:,}→{at['end']:,}",
                        title,
                        f"{rates['tree'][way]:,.0f}",
                        f"{rates['no-tree'][way]:,.0f}",
                        _pct(at["tree_vs_no_tree"][way] - 1),
                        f"{at['nodes_written']['mean']:.2f} / {at['nodes_written']['max']}",
                    ]
                )
        growth = appends["largest_vs_smallest"]
        append_rows.append(
            [
                backend,
                "largest / smallest",
                "with the tree",
                " / ".join(f"{growth[w]:.2f}×" for w in WAYS),
                "",
                "",
                "tree valid" if appends["tree_valid"] else "TREE INVALID",
            ]
        )
    if append_rows:
        first = next(m["appends"] for m in results["backends"].values() if m.get("appends"))
        if out:
            out.append("")
        out.append(
            f"== ledger appends/s (db.ledger.append, {first['appends']:,} per timing, median "
            f"of {first['reps']}), with the Merkle tree vs without ==",
        )
        out.append(
            table(
                [
                    "backend",
                    "entries",
                    "transactions",
                    "tree /s",
                    "no tree /s",
                    "tree vs none",
                    "nodes written mean / max",
                ],
                append_rows,
            )
        )
    return "\n".join(out)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per backend and operation for ``bench.run``'s targets table: the median
    per-round ratio of requests/s with receipts to without, ≥ 0.9."""
    found: list[dict[str, Any]] = []
    for backend, measured in results["backends"].items():
        http = measured.get("http")
        if not http:
            continue
        for operation, title in OPERATIONS.items():
            base = http["summary"][operation]["receipts_vs"].get(BASELINE)
            if base is None:
                continue
            found.append(
                {
                    "target": f"{backend} {title}: with / without receipts",
                    "measured": base["ratio"],
                    "threshold": 1 - TARGET_OVERHEAD,
                    "comparison": "≥",
                    "unit": "×",
                    "met": base["met"],
                    "note": "median of per-round ratios; "
                    + ", ".join(f"{r:.2f}" for r in base["paired_ratios"]),
                }
            )
    return found


def parse_args(argv: Sequence[str] | None) -> tuple[ReceiptConfig, Path | None]:
    """The configuration from the command line, and ``--out``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.receipts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2 s runs, 2 rounds, 1 rep")
    parser.add_argument("--seconds", type=float, default=None, help="per HTTP run (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--quantum-ms", type=int, default=0, help="release time quantum (0)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--modes", default=",".join(MODES), help=f"among {','.join(MODES)}")
    parser.add_argument("--append-sizes", default="1000,100000")
    parser.add_argument("--appends", type=int, default=1000, help="appends per timing")
    parser.add_argument("--append-reps", type=int, default=None, help="default 3 (1 quick)")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-appends", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="JSON result file")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if "receipts" not in modes or BASELINE not in modes or set(modes) - set(MODES):
        parser.error(f"--modes must include receipts and {BASELINE}, among {MODES}")
    config = ReceiptConfig(
        seconds=args.seconds or (2.0 if args.quick else 5.0),
        rounds=args.rounds or (2 if args.quick else 3),
        concurrency=args.concurrency,
        quantum_ms=args.quantum_ms,
        modes=tuple(m for m in MODES if m in modes),
        backends=tuple(b.strip() for b in args.backends.split(",") if b.strip()),
        append_sizes=tuple(int(s) for s in args.append_sizes.split(",") if s.strip()),
        appends=args.appends,
        append_reps=args.append_reps or (1 if args.quick else 3),
        skip_http=args.skip_http,
        skip_appends=args.skip_appends,
    )
    return config, args.out


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the tables, write ``bench/results/receipts-<time>.json``."""
    config, out = parse_args(argv)
    results = measure(config)
    print(format_report(results))
    out = out or RESULTS / f"receipts-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
