"""``ruis admin`` without ``--url``: each command performed by the service functions of
:mod:`api.services` on the configured database (imported only in this mode: it loads
OpenDP and Polars).

Each action validates the body the command stands for (:data:`cli.admin.CALLS`) with
the model the server validates it with, so both modes accept the same input.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import SQLAlchemyError

from api.app import prepare
from api.problems import ApiError
from api.schemas import (
    BudgetPublic,
    BudgetSet,
    ConsumerCreate,
    DatasetCreate,
    DatasetVersionCreate,
    Page,
)
from api.services import Actor, budgets, consumers, datasets, ledger, limits
from api.settings import Settings
from cli.admin import AdminError, export_filters, one_line
from db.engine import Database
from db.errors import DbError
from privacy.errors import InvalidDataset

Output = BaseModel | Iterator[str]
"""A public model (a page prints as an array of its items) or the lines of an export."""


@dataclass(frozen=True)
class Local:
    """What an action runs with: the database, the settings, the CLI user as admin, and the
    body of the command (:attr:`cli.admin.Call.body`)."""

    db: Database
    settings: Settings
    actor: Actor
    body: Any


Action = Callable[[argparse.Namespace, Local], Output]
_BUDGET = TypeAdapter(BudgetSet)


def _set_budget(a: argparse.Namespace, on: Local) -> BudgetPublic:
    body = _BUDGET.validate_python(on.body)
    amount = budgets.requested_amount(body)
    return budgets.set_budget(
        on.db, a.consumer, a.dataset, amount, actor=on.actor, period=body.period
    )


ACTIONS: dict[str, Action] = {
    "create-consumer": lambda a, on: consumers.create_consumer(
        on.db, ConsumerCreate.model_validate(on.body), actor=on.actor
    ),
    "list-consumers": lambda a, on: consumers.list_consumers(on.db),
    "issue-key": lambda a, on: consumers.issue_key(on.db, a.name, actor=on.actor),
    "list-keys": lambda a, on: consumers.list_keys(on.db, a.name),
    "revoke-key": lambda a, on: consumers.revoke_key(on.db, a.name, a.key_id, actor=on.actor),
    "register-dataset": lambda a, on: datasets.register_dataset(
        on.db, on.settings.data_dir, DatasetCreate.model_validate(on.body), actor=on.actor
    ),
    "list-datasets": lambda a, on: datasets.list_datasets(on.db, actor=on.actor),
    "reinstate-dataset": lambda a, on: datasets.reinstate_dataset(
        on.db, on.settings.data_dir, a.name, actor=on.actor
    ),
    "add-dataset-version": lambda a, on: datasets.add_version(
        on.db,
        on.settings.data_dir,
        a.name,
        DatasetVersionCreate.model_validate(on.body),
        actor=on.actor,
    ),
    "retire-dataset": lambda a, on: datasets.retire_dataset(on.db, a.name, actor=on.actor),
    "set-budget": _set_budget,
    "budgets": lambda a, on: budgets.list_budgets(
        on.db, actor=on.actor, consumer=a.consumer or None, dataset=a.dataset or None
    ),
    "set-limits": lambda a, on: limits.set_limits(
        on.db,
        on.settings.limits,
        a.name,
        limits.LimitsOverrides.model_validate(on.body),
        actor=on.actor,
    ),
    "limits": lambda a, on: limits.get_limits(on.db, on.settings.limits, a.name),
    "verify-ledger": lambda a, on: ledger.verify_ledger(on.db),
    "export-ledger": lambda a, on: ledger.export_lines(
        on.db, a.format, ledger.ledger_filter(**export_filters(a))
    ),
}
"""Every ``ruis admin`` command (the keys of :data:`cli.admin.CALLS`) as a service call."""


def _write(output: Output, out: Callable[[str], None]) -> None:
    if isinstance(output, Page):
        out(json.dumps([item.model_dump(mode="json") for item in output.items], indent=2) + "\n")
    elif isinstance(output, BaseModel):
        out(json.dumps(output.model_dump(mode="json"), indent=2) + "\n")
    else:
        for chunk in output:
            out(chunk)


def run_direct(
    args: argparse.Namespace,
    body: Any,
    settings: Settings,
    actor: str,
    out: Callable[[str], None],
) -> None:
    """Perform command ``args`` with ``body`` on the configured database (after migrating
    it), ledgering it with ``actor``; print its JSON (or export) to ``out``."""
    action = ACTIONS[args.admin_command]
    try:
        database = prepare(settings)
    except (SQLAlchemyError, ValueError) as exc:
        raise AdminError(f"cannot open the database: {one_line(exc)}") from None
    try:
        _write(action(args, Local(database, settings, Actor(actor), body)), out)
    except (DbError, InvalidDataset) as exc:
        raise AdminError(exc.detail) from None
    except ApiError as exc:
        raise AdminError(exc.detail) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first.get("loc", ()))
        raise AdminError(f"invalid input at {location or 'body'}: {first.get('msg')}") from None
    except SQLAlchemyError as exc:
        raise AdminError(f"database error: {one_line(exc)}") from None
    finally:
        database.dispose()
