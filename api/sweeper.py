"""The sweeper: resolves releases left pending after their debit.

A background thread (started in the app's lifespan) that, at start-up and then
every :data:`SWEEP_EVERY_SECONDS`:

1. stores the computed values waiting in the spool (:mod:`db.spool`) — those
   whose ``complete()`` failed on a database error, and those a dead process
   left — and renews the lease of any it cannot store yet, so nobody fails them
   as abandoned meanwhile;
2. fails, as ``abandoned`` (ledgered, no refund), pending releases whose lease
   ran out (:data:`ABANDON_GRACE_SECONDS` ago: a request waiting for the same query
   takes it over first) and whose values are not in the spool (their owner died
   computing).

Every step is idempotent under the ledger lock, so several workers or replicas
may sweep at once. A database that is down only delays the sweep.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

from api.settings import Settings
from db import releases
from db.engine import Database
from db.spool import Spool, attach

log = logging.getLogger("ruis.sweeper")

SWEEP_EVERY_SECONDS = 2.0
"""How often the sweeper looks for spooled values and abandoned releases."""
ABANDON_GRACE_SECONDS = 5.0
"""How long past its lease a release is left to a request waiting for it (which takes
it over and answers anew) before the sweeper fails it."""


def sweep(
    db: Database, spool: Spool | None, *, grace: float = ABANDON_GRACE_SECONDS
) -> tuple[int, int]:
    """One pass; returns how many spooled releases it stored and how many it failed as
    abandoned. Errors of one release are logged and do not stop the others."""
    stored = abandoned = 0
    for release_id in list(spool.release_ids()) if spool is not None else []:
        assert spool is not None
        item = spool.get(release_id)
        if item is None:
            continue
        try:
            if releases.store_spooled(db, item) is not None:
                stored += 1
            spool.remove(release_id)
        except releases.Abandoned:  # failed or stored otherwise already: nothing to keep
            spool.remove(release_id)
        except Exception as exc:  # the database is still unavailable: keep it, keep it leased
            log.warning("could not store the spooled release %s yet", release_id, exc_info=exc)
            with contextlib.suppress(Exception):  # the next sweep tries again
                releases.renew(db, release_id)
    for release_id in releases.expired(db, grace=grace):
        if spool is not None and spool.get(release_id) is not None:
            continue  # its values exist: stored by the loop above or the next sweep
        try:
            if releases.abandon(db, release_id):
                abandoned += 1
                log.warning("release %s was abandoned by its process; failed it", release_id)
        except Exception as exc:
            log.warning("could not fail the abandoned release %s", release_id, exc_info=exc)
    return stored, abandoned


class Sweeper:
    """The background thread running :func:`sweep` until :meth:`stop`."""

    def __init__(
        self, db: Database, spool: Spool | None, *, every: float = SWEEP_EVERY_SECONDS
    ) -> None:
        self._db = db
        self._spool = spool
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ruis-sweeper", daemon=True)

    def start(self) -> Sweeper:
        """Start sweeping (the first pass runs at once: it picks up a dead process's spool)."""
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            try:
                sweep(self._db, self._spool)
            except Exception as exc:  # e.g. the database is down: try again next time
                log.warning("sweep failed", exc_info=exc)
            if self._stop.wait(self._every):
                return

    def stop(self) -> None:
        """Stop and wait for the current pass (bounded)."""
        self._stop.set()
        self._thread.join(timeout=30)


def spool_directory(settings: Settings) -> Path:
    """Where computed values wait until they are stored: ``<data_dir>/.ruis/spool``."""
    return settings.data_dir / ".ruis" / "spool"


def start_sweeper(db: Database, settings: Settings) -> Sweeper:
    """Attach the spool of ``settings`` to ``db`` and start sweeping it."""
    spool = Spool(spool_directory(settings))
    attach(db, spool)
    return Sweeper(db, spool).start()
