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
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from api.settings import Settings
from db.amounts import MODEL_UNITS


class AdminError(Exception):
    """An action failed; the message is shown to the user."""


@dataclass(frozen=True)
class Call:
    """One admin command as an HTTP call (``--url``); ``body`` is also what the direct mode
    validates, with the models the server uses."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    params: dict[str, str] | None = None
    stream: bool = False


EXPORT_FILTERS = ("consumer", "dataset", "kind", "since", "until")


def export_filters(args: argparse.Namespace) -> dict[str, str]:
    """The ledger filters given to ``export-ledger`` (none: the whole ledger)."""
    return {f: getattr(args, f) for f in EXPORT_FILTERS if getattr(args, f, None) is not None}


def _budget_body(args: argparse.Namespace) -> dict[str, Any]:
    """``{"model": m, "epsilon"|"rho": "x"}``: the amount given, as its exact decimal text."""
    try:
        amount = Decimal(args.amount)
    except InvalidOperation:
        raise AdminError(f"{args.amount!r} is not a number") from None
    body: dict[str, Any] = {"model": args.model, MODEL_UNITS[args.model]: str(amount)}
    if (args.period_column is None) != (args.every is None):
        raise AdminError("a budget per period needs both --period-column and --every")
    if args.period_column is not None:
        body["period"] = {"column": args.period_column, "every": args.every}
    return body


def _dataset_body(args: argparse.Namespace) -> dict[str, Any]:
    try:
        body: dict[str, Any] = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as exc:
        raise AdminError(f"cannot read dataset JSON {args.file!r}: {exc}") from None
    return body


def _version_body(args: argparse.Namespace) -> dict[str, Any]:
    """``{"path", "columns"?, "max_rows"?}``: the new file and, from ``--columns FILE``,
    the grown keys of date columns (``{"day": {"keys": [...]}}``)."""
    body: dict[str, Any] = {"path": args.path}
    if args.columns:
        try:
            body["columns"] = json.loads(Path(args.columns).read_text())
        except (OSError, ValueError) as exc:
            raise AdminError(f"cannot read columns JSON {args.columns!r}: {exc}") from None
    if args.max_rows is not None:
        body["max_rows"] = args.max_rows
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


def _consumer(args: argparse.Namespace, *rest: str) -> str:
    return "/".join(("/v1/consumers", _segment(args.name), *rest))


def _budgets_params(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k, v in (("consumer", args.consumer), ("dataset", args.dataset)) if v}


CALLS: dict[str, Callable[[argparse.Namespace], Call]] = {
    "create-consumer": lambda a: Call("POST", "/v1/consumers", {"name": a.name, "role": a.role}),
    "list-consumers": lambda a: Call("GET", "/v1/consumers"),
    "issue-key": lambda a: Call("POST", _consumer(a, "keys")),
    "list-keys": lambda a: Call("GET", _consumer(a, "keys")),
    "revoke-key": lambda a: Call("DELETE", _consumer(a, "keys", _segment(a.key_id))),
    "register-dataset": lambda a: Call("POST", "/v1/datasets", _dataset_body(a)),
    "list-datasets": lambda a: Call("GET", "/v1/datasets"),
    "reinstate-dataset": lambda a: Call("POST", f"/v1/datasets/{_segment(a.name)}/reinstate"),
    "add-dataset-version": lambda a: Call(
        "POST", f"/v1/datasets/{_segment(a.name)}/versions", _version_body(a)
    ),
    "retire-dataset": lambda a: Call("POST", f"/v1/datasets/{_segment(a.name)}/retire"),
    "set-budget": lambda a: Call(
        "PUT", f"/v1/budgets/{_segment(a.consumer)}/{_segment(a.dataset)}", _budget_body(a)
    ),
    "budgets": lambda a: Call("GET", "/v1/budgets", params=_budgets_params(a)),
    "set-limits": lambda a: Call("PUT", _consumer(a, "limits"), _limits_body(a)),
    "limits": lambda a: Call("GET", _consumer(a, "limits")),
    "verify-ledger": lambda a: Call("GET", "/v1/ledger/verify"),
    "export-ledger": lambda a: Call(
        "GET", "/v1/ledger/export", params={"format": a.format, **export_filters(a)}, stream=True
    ),
}
"""Every ``ruis admin`` command as the HTTP call it stands for; the direct mode performs
the same commands with the service functions (:data:`cli.admin_direct.ACTIONS`)."""


def _http_error(response: httpx.Response) -> AdminError:
    response.read()
    try:
        problem = response.json()
        detail = f"{problem.get('title')}: {problem.get('detail')}"
    except (ValueError, AttributeError):
        detail = " ".join(response.text[:300].split())
    return AdminError(f"HTTP {response.status_code} {detail}")


def run_http(call: Call, url: str, key: str, out: Callable[[str], None]) -> None:
    """Perform ``call`` over HTTP as the admin holding ``key``.

    Lists are printed as one JSON array (every page), as in the direct mode.
    """
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            if call.stream:
                with client.stream(
                    call.method, call.path, json=call.body, params=call.params
                ) as response:
                    if response.is_error:
                        raise _http_error(response)
                    for chunk in response.iter_text():
                        out(chunk)
                return
            params = dict(call.params or {})
            items: list[Any] = []
            while True:
                response = client.request(call.method, call.path, json=call.body, params=params)
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


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of at most 300 characters."""
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
        call = CALLS[args.admin_command](args)
        url = args.url or os.environ.get("RUIS_URL")
        if url:
            key = args.key or os.environ.get("RUIS_ADMIN_KEY")
            if not key:
                raise AdminError("--url needs an admin key: --key or RUIS_ADMIN_KEY")
            run_http(call, url, key, out)
        else:
            from cli.admin_direct import run_direct  # imports the service (OpenDP, Polars)

            run_direct(args, call.body, Settings.from_env(), f"cli:{_local_user()}", out)
        sys.stdout.flush()
    except AdminError as exc:
        print(f"ruis admin: {one_line(exc)}", file=sys.stderr)
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
    version = sub.add_parser(
        "add-dataset-version",
        help="add a version of a dataset: a new file (e.g. one more month), grown date keys",
    )
    version.add_argument("name")
    version.add_argument("path", help="the new file, relative to the data directory")
    version.add_argument(
        "--columns", help='JSON file of grown date columns: {"day": {"keys": [...]}}'
    )
    version.add_argument("--max-rows", type=int, help="the new public bound on the rows")
    retire = sub.add_parser(
        "retire-dataset", help="retire a dataset: no new queries; its history is kept"
    )
    retire.add_argument("name")
    budget = sub.add_parser("set-budget", help="create or change a budget")
    budget.add_argument("consumer")
    budget.add_argument("dataset")
    budget.add_argument("--model", choices=["pure", "zcdp"], default="pure")
    budget.add_argument("amount", help="epsilon (pure) or rho (zcdp); per period with --every")
    budget.add_argument(
        "--period-column", help="a budget per period: the date column whose periods it counts"
    )
    budget.add_argument(
        "--every", choices=["month", "week", "day"], help="a budget per period: its length"
    )
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
    export = sub.add_parser(
        "export-ledger", help="write the ledger to stdout (all of it, or the entries filtered)"
    )
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    for name in EXPORT_FILTERS:
        export.add_argument(
            f"--{name}",
            help="inclusive ISO 8601 time or date" if name in ("since", "until") else None,
        )
