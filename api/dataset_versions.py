"""Adding a version to a dataset, and retiring one (see :mod:`db.dataset_versions`).

A version is the dataset's metadata over a new file (e.g. the file with one more month
of events). Only what cannot loosen the guarantee may change:

- ``path``: the new file, checked in full as at registration (:func:`api.dataset_files.examine`);
- the ``keys`` of a ``date`` column may grow (every current key stays): the keys are
  public, a new day is one more public key;
- the ``range`` of a derived ``date``/``iso_week``/``month`` column may grow (it contains
  the current one): its keys are implied by the range, so this is the same;
- ``max_rows`` may change: it is a public bound that OpenDP's accounting of float sums
  takes as an input (a release's cost is computed with the value of its version), and
  the new file must hold at most that many rows.

Everything else is not even accepted in the request (422): the privacy unit, the set of
columns and their types, the keys of categorical and integer columns, bounds and
automatic bounds, the contribution bounds and their automatic limits, δ, the cap and the
hierarchy. Changing any of them could loosen what a release protects or make two
versions' answers incomparable: that needs a new dataset (which, over the same file,
shares the cap).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api import dataset_files
from api.problems import InvalidRequest
from api.schemas import DatasetVersionCreate
from db import catalog, dataset_versions
from db.engine import Database
from db.models import Dataset
from privacy.metadata import DatasetMetadata

_RANGED_PARTS = ("date", "iso_week", "month")


def _iso(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{what} {text!r} is not an ISO date (YYYY-MM-DD)") from None


def grown_metadata(current: DatasetMetadata, body: DatasetVersionCreate) -> DatasetMetadata:
    """The metadata of the new version: ``current`` over ``body.path`` with what grows.

    A 422 (:class:`InvalidRequest`) names the first change that would loosen it."""
    data: dict[str, Any] = current.model_dump(mode="json")
    data["path"] = body.path
    if body.max_rows is not None:
        data["max_rows"] = body.max_rows
    for name, growth in (body.columns or {}).items():
        spec = current.columns.get(name)
        if spec is None:
            raise InvalidRequest(
                f"column {name!r} is not declared: a version cannot add columns; "
                "register a new dataset"
            )
        if (growth.keys is None) == (growth.range is None):
            raise InvalidRequest(f"column {name!r}: give either 'keys' or 'range'")
        if growth.keys is not None:
            if spec.type != "date" or spec.keys is None:
                raise InvalidRequest(
                    f"column {name!r} is {spec.type}: only the keys of date columns may "
                    "grow in a version; other keys need a new dataset"
                )
            new = {_iso(k, f"column {name!r}: key").isoformat() for k in growth.keys}
            missing = {_iso(str(k), "key").isoformat() for k in spec.keys} - new
            if missing:
                raise InvalidRequest(
                    f"column {name!r}: a version may only add keys; {len(missing)} of the "
                    f"current keys are missing (first {min(missing)})"
                )
            data["columns"][name]["keys"] = list(growth.keys)
        if growth.range is not None:
            if spec.type != "derived" or spec.part not in _RANGED_PARTS or spec.range is None:
                raise InvalidRequest(
                    f"column {name!r} has no range: only derived date, iso_week and month "
                    "columns have one"
                )
            first, last = (_iso(t, f"column {name!r}: range") for t in growth.range)
            old_first, old_last = (_iso(t, "range") for t in spec.range)
            if first > old_first or last < old_last:
                raise InvalidRequest(
                    f"column {name!r}: a version may only grow the range [{old_first}, {old_last}]"
                )
            data["columns"][name]["range"] = [first.isoformat(), last.isoformat()]
    try:
        return DatasetMetadata.model_validate(data)
    except ValidationError as exc:
        first_error = exc.errors()[0]
        where = ".".join(map(str, first_error.get("loc", ())))
        message = str(first_error.get("msg", "")).removeprefix("Value error, ")
        raise InvalidRequest(
            f"the new version's metadata is invalid: {where + ': ' if where else ''}{message}"
        ) from None


def add_version(
    db: Database,
    data_dir: Path,
    name: str,
    body: DatasetVersionCreate,
    *,
    actor: str,
    request_id: str | None = None,
) -> Dataset:
    """Check the new version (what it changes, then its file in full) and add it.

    A retired dataset is a 409 before any file is read; a loosening change or a failed
    file check a 422; nothing is stored or ledgered then."""
    dataset = catalog.get(db, name)
    dataset_versions.refuse_retired(dataset, "adding a version")
    current = DatasetMetadata.model_validate(catalog.metadata_of(dataset))
    metadata = grown_metadata(current, body)
    fingerprint = dataset_files.examine(data_dir, metadata)
    return dataset_versions.add_version(
        db,
        name=name,
        metadata=metadata.model_dump(mode="json"),
        fingerprint=fingerprint,
        expected_version=dataset.version,
        actor=actor,
        request_id=request_id,
    )
