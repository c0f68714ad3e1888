"""``ruis demo``: synthetic mobility data, registered and budgeted, then served.

Idempotent on one data directory: files, consumers, datasets and budgets that
already exist are reused; the keys are kept in ``demo-keys.json`` (mode 0600).
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.settings import Settings
from db import accounts, budgets, catalog
from db.engine import Database
from db.errors import AlreadyExists, NotFound

if TYPE_CHECKING:  # the data generator (Polars) and OpenDP load only when the demo runs
    from cli.demo_data import DemoFiles

ANALYST = "cbs-mobility"
ADMIN = "demo-admin"
AUDITOR = "demo-auditor"
ANALYST_EPSILON = Decimal("10")
KEYS_FILE = "demo-keys.json"


def _ensure_files(data_dir: Path, args: argparse.Namespace) -> DemoFiles:
    from cli import demo_data

    stamp = data_dir / "demo-params.json"
    params = {
        "devices": args.devices,
        "days": args.days,
        "seed": args.seed,
        "format": demo_data.DATA_FORMAT,  # files of an older generator are written again
    }
    files_exist = (data_dir / "mobility_events.parquet").exists() and (
        data_dir / "residents.parquet"
    ).exists()
    if files_exist and stamp.exists() and json.loads(stamp.read_text()) == params:
        return demo_data.describe(data_dir, devices=args.devices, days=args.days, seed=args.seed)
    print(f"generating {args.devices:,} devices over {args.days} days (seed {args.seed})...")
    files = demo_data.generate(data_dir, devices=args.devices, days=args.days, seed=args.seed)
    stamp.write_text(json.dumps(params))
    return files


def _read_keys(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    value: dict[str, str] = json.loads(path.read_text())
    return value


def _write_keys(path: Path, keys: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        json.dump(keys, handle, indent=2)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def _ensure_consumer(db: Database, name: str, role: str, keys: dict[str, str]) -> str:
    try:
        _, issued = accounts.create_consumer(db, name=name, role=role, actor="ruis-demo")
        return issued.secret
    except AlreadyExists:
        if (
            name in keys
            and (principal := accounts.authenticate(db, keys[name])) is not None
            and principal.name == name
        ):
            return keys[name]
        return accounts.issue_key(db, name=name, actor="ruis-demo").secret


def _ensure_dataset(db: Database, data_dir: Path, body: dict[str, Any]) -> None:
    from api import dataset_files
    from privacy.metadata import DatasetMetadata

    metadata = DatasetMetadata.model_validate(body)
    try:
        dataset = catalog.get(db, metadata.name)
    except NotFound:
        dataset_files.register(db, data_dir, metadata, actor="ruis-demo")
        return
    if not dataset_files.is_current(data_dir, dataset):  # the files were generated again
        dataset_files.reinstate(db, data_dir, metadata.name, actor="ruis-demo")


def _ensure_budget(db: Database, dataset: str) -> None:
    if budgets.list_budgets(db, consumer=ANALYST, dataset=dataset):
        return
    budgets.set_budget(
        db,
        consumer=ANALYST,
        dataset=dataset,
        model="pure",
        amount=ANALYST_EPSILON,
        actor="ruis-demo",
    )


NIGHT_HOURS = [0, 1, 2, 3, 4, 5, 6, 22, 23]
"""Where a phone spends the night is where its owner lives: the hours of "residents"."""


def example_query(files: DemoFiles) -> dict[str, Any]:
    """The body of "visitors per municipality, last week"."""
    last = files.days[-1]
    first = max(files.days[0], last - timedelta(days=6))
    return {
        "dataset": "mobility_events",
        "statistic": "unit_count",
        "group_by": ["municipality"],
        "where": [
            {"column": "day", "op": "between", "value": [first.isoformat(), last.isoformat()]}
        ],
        "privacy": {"epsilon": 0.5},
    }


def crowd_queries(files: DemoFiles) -> dict[str, dict[str, Any]]:
    """More questions of the crowd model, each ONE query over the events: the title the
    banner prints, and the body."""
    return {
        "Residents per neighbourhood: each phone counted once, where it is most often at "
        "night (ε = 1)": {
            "dataset": "mobility_events",
            "statistic": "unit_count",
            "group_by": ["neighbourhood"],
            "unit_location": {"column": "neighbourhood", "rule": "most_frequent"},
            "where": [{"column": "hour", "op": "in", "value": NIGHT_HOURS}],
            "privacy": {"epsilon": 1},
        },
        "Visitors per municipality per weekday (1 = Monday; ε = 1)": {
            "dataset": "mobility_events",
            "statistic": "unit_count",
            "group_by": ["municipality", "weekday"],
            "privacy": {"epsilon": 1},
        },
    }


def setup(
    settings: Settings, args: argparse.Namespace
) -> tuple[dict[str, str], dict[str, Any], dict[str, dict[str, Any]]]:
    """Generate or reuse the data, consumers, datasets and budgets; return the keys, the
    example query and the crowd-model queries."""
    from api.app import prepare
    from cli import demo_data

    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    files = _ensure_files(data_dir, args)
    db = prepare(settings)
    try:
        keys_path = data_dir / KEYS_FILE
        known = _read_keys(keys_path)
        keys = {
            name: _ensure_consumer(db, name, role, known)
            for name, role in ((ADMIN, "admin"), (ANALYST, "analyst"), (AUDITOR, "auditor"))
        }
        _write_keys(keys_path, keys)
        _ensure_dataset(db, data_dir, demo_data.events_registration(files))
        _ensure_dataset(db, data_dir, demo_data.residents_registration(files))
        _ensure_budget(db, "mobility_events")
        _ensure_budget(db, "residents")
    finally:
        db.dispose()
    return keys, example_query(files), crowd_queries(files)


def python_example(url: str, key: str, query: dict[str, Any]) -> str:
    """``query`` with the Python client (``ruis_client``), as the banner prints it."""
    where = ", ".join(
        f"({json.dumps(c['column'])}, {json.dumps(c['op'])}, {json.dumps(c['value'])})"
        for c in query.get("where", [])
    )
    arguments = [json.dumps(query["dataset"]), json.dumps(query["statistic"])]
    if query.get("group_by"):
        arguments.append(f"group_by={json.dumps(query['group_by'])}")
    if where:
        arguments.append(f"where=[{where}]")
    arguments.append(f"epsilon={query['privacy']['epsilon']!r}")
    call = ",\n        ".join(arguments)
    return f"""from ruis_client import Ruis

with Ruis("{url}", "{key}") as ruis:
    release = ruis.query(
        {call},
    )
    print(release.frame, release.accuracy, release.budget_remaining)
"""


def banner(
    url: str,
    keys: dict[str, str],
    query: dict[str, Any],
    keys_path: Path,
    more: dict[str, dict[str, Any]] | None = None,
) -> str:
    """What the demo prints before serving: the console's URL, keys, a curl and the same
    with the Python client, then the bodies of ``more`` queries for the same curl."""
    body = json.dumps(query)
    curl = (
        f"curl -s -X POST {url}/v1/queries \\\n"
        f"  -H 'Authorization: Bearer {keys[ANALYST]}' \\\n"
        "  -H 'Content-Type: application/json' \\\n"
    )
    others = "".join(
        f"\n{title}:\n\n{curl}  -d '{json.dumps(other)}'\n" for title, other in (more or {}).items()
    )
    return f"""
Ruis demo — serving on {url}
  Console:  {url}/ui   (sign in with a key below)
  API docs: {url}/docs

Keys (also in {keys_path}, readable only by you; shown here once):
  admin    {ADMIN:<14} {keys[ADMIN]}
  analyst  {ANALYST:<14} {keys[ANALYST]}
  auditor  {AUDITOR:<14} {keys[AUDITOR]}

Visitors per municipality last week (ε = 0.5 of the analyst's 10):

{curl}  -d '{body}'

The same with the Python client (ruis_client):

{python_example(url, keys[ANALYST], query)}{others}
Auditor: curl -s {url}/v1/ledger/verify -H 'Authorization: Bearer {keys[AUDITOR]}'
"""


def run(args: argparse.Namespace) -> int:
    """Set up the demo and serve it until interrupted."""
    import uvicorn

    from api.app import create_app

    os.environ.setdefault("RUIS_DATA_DIR", str(Path(args.data_dir).resolve()))
    settings = Settings.from_env()
    keys, query, more = setup(settings, args)
    url = f"http://{args.host}:{args.port}"
    print(banner(url, keys, query, settings.data_dir / KEYS_FILE, more), flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="warning")
    return 0


def add_parser(commands: Any) -> None:
    """Register ``ruis demo``."""
    demo = commands.add_parser("demo", help="generate demo data, set it up and serve it")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--devices", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=7)
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument(
        "--data-dir",
        default="ruis-demo",
        help="where the data, database and keys live (default ./ruis-demo)",
    )
    demo.set_defaults(handler=run)
