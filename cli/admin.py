"""``ruis admin``: every admin action from a shell, on the database or over HTTP.

Without ``--url`` it works directly on the configured database
(``RUIS_DATABASE_URL``, ``RUIS_DATA_DIR``), ledgering actions with the actor
``cli:<user>``. With ``--url`` (or ``RUIS_URL``) and ``--key`` (or
``RUIS_ADMIN_KEY``) it calls the HTTP API as that admin. Output is JSON on
stdout; errors are one line on stderr and exit status 1 (2 for usage errors).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.settings import Settings
from db.errors import DbError


class AdminError(Exception):
    """An action failed; the message is shown to the user."""


@dataclass(frozen=True)
class Action:
    """One admin action, as an HTTP call (the direct mode maps it to the db layer)."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    stream: bool = False


def _amount(model: str, value: str) -> dict[str, Any]:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise AdminError(f"{value!r} is not a number") from None
    return {"model": model, "epsilon" if model == "pure" else "rho": str(amount)}


def _dataset_body(path: str) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read dataset JSON {path!r}: {exc}") from None
    return body


LIMIT_OPTIONS = (
    "min_epsilon",
    "min_rho",
    "max_cells",
    "max_concurrent",
    "requests_per_minute",
    "burst",
)


def _limits_body(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides given (the others go back to the deployment's defaults)."""
    body: dict[str, Any] = {}
    for name in LIMIT_OPTIONS:
        value = getattr(args, name)
        if value is not None:
            body[name] = value if name in ("min_epsilon", "min_rho") else int(value)
    return body


def _segment(value: str) -> str:
    """``value`` as one URL path segment (a name with ``/`` cannot reach another endpoint)."""
    return quote(value, safe="")


def action_of(args: argparse.Namespace) -> Action:
    """The HTTP call an admin command stands for."""
    match args.admin_command:
        case "create-consumer":
            return Action("POST", "/v1/consumers", {"name": args.name, "role": args.role})
        case "list-consumers":
            return Action("GET", "/v1/consumers")
        case "issue-key":
            return Action("POST", f"/v1/consumers/{_segment(args.name)}/keys")
        case "list-keys":
            return Action("GET", f"/v1/consumers/{_segment(args.name)}/keys")
        case "revoke-key":
            return Action(
                "DELETE", f"/v1/consumers/{_segment(args.name)}/keys/{_segment(args.key_id)}"
            )
        case "register-dataset":
            return Action("POST", "/v1/datasets", _dataset_body(args.file))
        case "list-datasets":
            return Action("GET", "/v1/datasets")
        case "reinstate-dataset":
            return Action("POST", f"/v1/datasets/{_segment(args.name)}/reinstate")
        case "set-budget":
            return Action(
                "PUT",
                f"/v1/budgets/{_segment(args.consumer)}/{_segment(args.dataset)}",
                _amount(args.model, args.amount),
            )
        case "budgets":
            params = {
                k: v for k, v in (("consumer", args.consumer), ("dataset", args.dataset)) if v
            }
            return Action("GET", "/v1/budgets", params=params)
        case "set-limits":
            return Action("PUT", f"/v1/consumers/{_segment(args.name)}/limits", _limits_body(args))
        case "limits":
            return Action("GET", f"/v1/consumers/{_segment(args.name)}/limits")
        case "verify-ledger":
            return Action("GET", "/v1/ledger/verify")
        case "export-ledger":
            return Action("GET", "/v1/ledger/export", params={"format": args.format}, stream=True)
    raise AdminError(f"unknown command {args.admin_command!r}")  # pragma: no cover


def _http_error(response: httpx.Response) -> AdminError:
    response.read()
    try:
        problem = response.json()
        detail = f"{problem.get('title')}: {problem.get('detail')}"
    except (ValueError, AttributeError):
        detail = " ".join(response.text[:300].split())
    return AdminError(f"HTTP {response.status_code} {detail}")


def run_http(action: Action, url: str, key: str, out: Callable[[str], None]) -> None:
    """Perform ``action`` over HTTP as the admin holding ``key``.

    Lists are printed as one JSON array (every page), as in the direct mode.
    """
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            if action.stream:
                with client.stream(
                    action.method, action.path, json=action.body, params=action.params
                ) as response:
                    if response.is_error:
                        raise _http_error(response)
                    for chunk in response.iter_text():
                        out(chunk)
                return
            params = dict(action.params or {})
            items: list[Any] = []
            while True:
                response = client.request(
                    action.method, action.path, json=action.body, params=params
                )
                if response.is_error:
                    raise _http_error(response)
                document = response.json()
                if not (isinstance(document, dict) and set(document) == {"items", "next_cursor"}):
                    out(json.dumps(document, indent=2) + "\n")
                    return
                items.extend(document["items"])
                if not document["next_cursor"]:
                    out(json.dumps(items, indent=2) + "\n")
                    return
                params["cursor"] = document["next_cursor"]
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise AdminError(f"cannot reach {url}: {exc}") from None


def _direct_export(settings: Settings, fmt: str) -> Iterator[str]:
    from api.routes.ledger import export_lines
    from db.engine import Database

    database = Database(settings.database_url)
    try:
        yield from export_lines(database, fmt)
    finally:
        database.dispose()


def run_direct(action: Action, settings: Settings, actor: str, out: Callable[[str], None]) -> None:
    """Perform ``action`` directly on the configured database (after migrating it)."""
    from api import dataset_files, schemas
    from api.app import prepare
    from api.problems import ApiError
    from api.routes import ledger as ledger_routes
    from api.routes.budgets import DEFAULT_DELTA, budget_public
    from api.routes.datasets import dataset_public
    from api.routes.limits import LimitsOverrides, limits_public
    from db import accounts, budgets, catalog, limits, reconcile
    from privacy.errors import InvalidDataset
    from privacy.metadata import BudgetAmount, DatasetMetadata, PureCost

    try:
        database = prepare(settings)
    except (SQLAlchemyError, ValueError) as exc:
        raise AdminError(f"cannot open the database: {_one_line(exc)}") from None
    result: Any
    try:
        parts = [unquote(part) for part in action.path.strip("/").split("/")[1:]]
        match (action.method, parts):
            case ("POST", ["consumers"]):
                create = schemas.ConsumerCreate.model_validate(action.body)
                consumer, key = accounts.create_consumer(
                    database, name=create.name, role=create.role, actor=actor
                )
                result = schemas.ConsumerCreated(
                    id=consumer.id or 0,
                    name=consumer.name,
                    role=create.role,
                    created_at=consumer.created_at,
                    api_key=key.secret,
                    key_id=key.key_id,
                )
            case ("GET", ["consumers"]):
                result = [
                    schemas.ConsumerPublic.model_validate(c, from_attributes=True)
                    for c in accounts.list_consumers(database)
                ]
            case ("POST", ["consumers", name, "keys"]):
                issued = accounts.issue_key(database, name=name, actor=actor)
                result = schemas.KeyCreated(
                    id=issued.key_id,
                    prefix=issued.prefix,
                    created_at=issued.created_at,
                    api_key=issued.secret,
                )
            case ("GET", ["consumers", name, "keys"]):
                result = [
                    schemas.KeyPublic(
                        id=k.id, prefix=k.prefix, created_at=k.created_at, revoked_at=k.revoked_at
                    )
                    for k in accounts.list_keys(database, name)
                ]
            case ("DELETE", ["consumers", name, "keys", key_id]):
                key_row = accounts.revoke_key(database, name=name, key_id=key_id, actor=actor)
                result = schemas.KeyPublic(
                    id=key_row.id,
                    prefix=key_row.prefix,
                    created_at=key_row.created_at,
                    revoked_at=key_row.revoked_at,
                )
            case ("POST", ["datasets"]):
                metadata = DatasetMetadata.model_validate(action.body)
                dataset = dataset_files.register(database, settings.data_dir, metadata, actor=actor)
                result = dataset_public(dataset, full=True)
            case ("POST", ["datasets", name, "reinstate"]):
                dataset = dataset_files.reinstate(database, settings.data_dir, name, actor=actor)
                result = dataset_public(dataset, full=True)
            case ("GET", ["datasets"]):
                result = [dataset_public(d, full=True) for d in catalog.list_datasets(database)]
            case ("PUT", ["budgets", consumer_name, dataset_name]):
                amount = TypeAdapter(BudgetAmount).validate_python(action.body)
                value = amount.epsilon if isinstance(amount, PureCost) else amount.rho
                view = budgets.set_budget(
                    database,
                    consumer=consumer_name,
                    dataset=dataset_name,
                    model=amount.model,
                    amount=value,
                    actor=actor,
                )
                metadata_doc = catalog.metadata_of(catalog.get(database, dataset_name))
                result = budget_public(view, float(metadata_doc.get("delta", DEFAULT_DELTA)))
            case ("GET", ["budgets"]):
                params = action.params or {}
                deltas = {
                    d.name: float(catalog.metadata_of(d).get("delta", DEFAULT_DELTA))
                    for d in catalog.list_datasets(database)
                }
                result = [
                    budget_public(v, deltas.get(v.dataset, DEFAULT_DELTA))
                    for v in budgets.list_budgets(
                        database, consumer=params.get("consumer"), dataset=params.get("dataset")
                    )
                ]
            case ("PUT", ["consumers", name, "limits"]):
                overrides = LimitsOverrides.model_validate(action.body)
                stored = limits.set_overrides(
                    database,
                    name=name,
                    overrides=limits.Overrides(**overrides.model_dump()),
                    actor=actor,
                )
                result = limits_public(name, stored, settings.limits)
            case ("GET", ["consumers", name, "limits"]):
                result = limits_public(name, limits.get_by_name(database, name), settings.limits)
            case ("GET", ["ledger", "verify"]):
                result = ledger_routes.verification(*reconcile.verify(database))
            case ("GET", ["ledger", "export"]):
                for chunk in _direct_export(settings, (action.params or {})["format"]):
                    out(chunk)
                return
            case _:  # pragma: no cover
                raise AdminError(f"unsupported action {action.method} {action.path}")
    except (DbError, InvalidDataset) as exc:
        raise AdminError(exc.detail) from None
    except ApiError as exc:
        raise AdminError(exc.detail) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first.get("loc", ()))
        raise AdminError(f"invalid input at {location or 'body'}: {first.get('msg')}") from None
    except SQLAlchemyError as exc:
        raise AdminError(f"database error: {_one_line(exc)}") from None
    finally:
        database.dispose()
    if isinstance(result, list):
        out(json.dumps([r.model_dump(mode="json") for r in result], indent=2) + "\n")
    else:
        out(json.dumps(result.model_dump(mode="json"), indent=2) + "\n")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _local_user() -> str:
    """The OS user running the command (``unknown`` without a passwd entry, as in some
    containers)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def run(args: argparse.Namespace) -> int:
    """Run one ``ruis admin`` command."""

    def out(text: str) -> None:
        sys.stdout.write(text)

    try:
        action = action_of(args)
        url = args.url or os.environ.get("RUIS_URL")
        if url:
            key = args.key or os.environ.get("RUIS_ADMIN_KEY")
            if not key:
                raise AdminError("--url needs an admin key: --key or RUIS_ADMIN_KEY")
            run_http(action, url, key, out)
        else:
            run_direct(action, Settings.from_env(), f"cli:{_local_user()}", out)
        sys.stdout.flush()
    except AdminError as exc:
        print(f"ruis admin: {_one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. ``ruis admin export-ledger | head``
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0


def add_parser(commands: Any) -> None:
    """Register ``ruis admin`` and its subcommands."""
    admin = commands.add_parser(
        "admin", help="administration (consumers, keys, datasets, budgets, ledger)"
    )
    admin.add_argument(
        "--url", help="call this Ruis server instead of using the database directly (env RUIS_URL)"
    )
    admin.add_argument("--key", help="admin API key for --url (env RUIS_ADMIN_KEY)")
    admin.set_defaults(handler=run)
    sub = admin.add_subparsers(dest="admin_command", required=True)
    create = sub.add_parser("create-consumer", help="create a consumer and its first key")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=["analyst", "admin", "auditor"])
    sub.add_parser("list-consumers", help="list consumers")
    issue = sub.add_parser("issue-key", help="issue another key for a consumer")
    issue.add_argument("name")
    keys = sub.add_parser("list-keys", help="list a consumer's keys (no secrets)")
    keys.add_argument("name")
    revoke = sub.add_parser("revoke-key", help="revoke one key")
    revoke.add_argument("name")
    revoke.add_argument("key_id")
    register = sub.add_parser("register-dataset", help="register a dataset from a JSON file")
    register.add_argument("file")
    sub.add_parser("list-datasets", help="list datasets")
    reinstate = sub.add_parser(
        "reinstate-dataset",
        help="re-check a (suspended) dataset's current file and make it active again",
    )
    reinstate.add_argument("name")
    budget = sub.add_parser("set-budget", help="create or change a budget")
    budget.add_argument("consumer")
    budget.add_argument("dataset")
    budget.add_argument("--model", choices=["pure", "zcdp"], default="pure")
    budget.add_argument("amount", help="epsilon (pure) or rho (zcdp)")
    show = sub.add_parser("budgets", help="show budgets")
    show.add_argument("--consumer")
    show.add_argument("--dataset")
    set_limits = sub.add_parser(
        "set-limits",
        help="replace a consumer's limit overrides (options not given: the deployment's default)",
    )
    set_limits.add_argument("name")
    set_limits.add_argument("--min-epsilon", help="smallest ε one release may cost")
    set_limits.add_argument("--min-rho", help="smallest ρ one release may cost")
    set_limits.add_argument("--max-cells", type=int, help="most key combinations per query")
    set_limits.add_argument(
        "--max-concurrent", type=int, help="releases (and previews) computing at once, per process"
    )
    set_limits.add_argument(
        "--requests-per-minute", type=int, help="sustained query requests per minute, per process"
    )
    set_limits.add_argument("--burst", type=int, help="token bucket size")
    show_limits = sub.add_parser("limits", help="show a consumer's limits")
    show_limits.add_argument("name")
    sub.add_parser("verify-ledger", help="re-compute the ledger's hash chain")
    export = sub.add_parser("export-ledger", help="write the whole ledger to stdout")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
