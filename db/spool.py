"""A durable spool of computed release values that are not stored yet.

Between computing a release and storing it (:func:`db.releases.complete`) the
values exist only in one process's memory. The release path writes them here
first — one JSON file per release, written to a temporary name, fsync'd,
renamed into place and the directory fsync'd — so that a database error while
storing them, or the death of the process, cannot lose values whose cost is
already debited. :mod:`api.sweeper` stores spooled values later (also those a
dead process left), and :func:`db.releases.start` completes a spooled release
from its file instead of failing it as abandoned, so a retry is never charged
twice for values that exist.

The spool holds only released (noisy) values, never microdata; its files are
mode 0600 in a directory of mode 0700. A spool shared by replicas (a shared
data directory) works: storing is idempotent under the ledger lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from db.engine import Database

log = logging.getLogger("ruis.db.spool")

_RELEASE_ID = re.compile(r"rel_[0-9a-f]{24}")
_SPOOLS: weakref.WeakKeyDictionary[Database, Spool] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Spooled:
    """Computed values of a debited release, waiting to be stored."""

    release_id: str
    consumer: str
    dataset: str
    request_id: str | None
    body: dict[str, Any]
    output: dict[str, Any]


class Spool:
    """A directory of spooled releases (created on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, release_id: str) -> Path:
        if not _RELEASE_ID.fullmatch(release_id):
            raise ValueError(f"not a release id: {release_id[:48]!r}")
        return self.directory / f"{release_id}.json"

    def put(self, item: Spooled) -> None:
        """Write ``item`` durably (fsync'd file and directory); raises OSError on failure."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(item.release_id)
        temporary = path.with_suffix(".tmp")
        text = json.dumps(
            {
                "release_id": item.release_id,
                "consumer": item.consumer,
                "dataset": item.dataset,
                "request_id": item.request_id,
                "body": item.body,
                "output": item.output,
            },
            separators=(",", ":"),
            ensure_ascii=False,
            allow_nan=False,
        )
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        descriptor = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def get(self, release_id: str) -> Spooled | None:
        """The spooled values of ``release_id``, or None (absent or unreadable)."""
        try:
            path = self._path(release_id)
            document = json.loads(path.read_text(encoding="utf-8"))
            return Spooled(
                release_id=str(document["release_id"]),
                consumer=str(document["consumer"]),
                dataset=str(document["dataset"]),
                request_id=document.get("request_id"),
                body=dict(document["body"]),
                output=dict(document["output"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:  # torn or foreign file
            log.error("spool file of %s is unreadable", release_id[:48], exc_info=exc)
            return None

    def remove(self, release_id: str) -> None:
        """Forget ``release_id`` (it was stored, or can never be); never raises (a file
        that cannot be removed is met again by the sweeper, which finds it stored)."""
        try:
            self._path(release_id).unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.error("could not remove the spool file of %s", release_id, exc_info=exc)

    def release_ids(self) -> Iterator[str]:
        """The ids of the spooled releases (any order)."""
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        for name in names:
            stem, _, suffix = name.partition(".")
            if suffix == "json" and _RELEASE_ID.fullmatch(stem):
                yield stem


def attach(db: Database, spool: Spool) -> None:
    """Make ``spool`` the spool of ``db`` (so :func:`db.releases.start` consults it)."""
    _SPOOLS[db] = spool


def of(db: Database) -> Spool | None:
    """The spool attached to ``db``, if any."""
    return _SPOOLS.get(db)
