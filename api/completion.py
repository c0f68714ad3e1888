"""After the debit: store computed values without losing them, or fail on the ledger.

Once :func:`db.releases.start` has debited a release, the analyst has paid for
it, so every way out of the release path must leave a trace and keep what was
computed:

- :func:`store` spools the computed body durably (:mod:`db.spool`) *before*
  storing it, retries :func:`db.releases.complete` with backoff on a database
  error (a killed connection, a failover), and when the database still refuses,
  answers ``503 release-pending`` with the ``release_id`` and ``Retry-After``.
  The spooled values are then stored by the sweeper (:mod:`api.sweeper`) or by
  the client's retry of the same query (:func:`db.releases.start` completes a
  spooled release and serves it, ``cached: true``) — never debited twice.
- :func:`fail` ledgers a failure (``release_output`` with status ``failed``); if
  even that cannot be written, the release stays pending and the sweeper fails it
  as ``abandoned`` once its lease runs out (ledgered as well).

Every problem raised here carries the ``release_id``.
"""

from __future__ import annotations

import logging
import time

from api.problems import ReleaseFailed, ReleasePending
from api.release_body import QueryResponse
from db import releases, spool
from db.engine import Database

log = logging.getLogger("ruis.release")

COMPLETE_RETRY_DELAYS = (0.1, 0.3, 0.9)
"""Seconds to wait before each retry of storing a computed release."""
PENDING_RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a ``503 release-pending``: about two sweeps."""


def fail(
    db: Database,
    *,
    release_id: str,
    consumer: str,
    dataset: str,
    reason: str,
    request_id: str | None,
) -> None:
    """Ledger the failure of a debited release; never raises.

    Already failed (abandoned): nothing to do. The database failing: the release
    stays pending, and once its lease runs out the sweeper fails it as abandoned.
    """
    try:
        releases.fail(
            db,
            release_id=release_id,
            consumer=consumer,
            dataset=dataset,
            reason=reason,
            request_id=request_id,
        )
    except releases.Abandoned:
        pass  # already ledgered as failed
    except Exception as exc:
        log.error(
            "could not ledger the failure of release %s; the sweeper will", release_id, exc_info=exc
        )


def store(
    db: Database, *, release: QueryResponse, consumer: str, dataset: str, request_id: str | None
) -> None:
    """Store a computed release durably (its JSON and its ``release_output`` ledger entry),
    or raise a problem carrying its ``release_id``.

    Returns once the body is stored (this call or a concurrent one stored it).
    Raises :class:`ReleasePending` if the database refused every attempt but the
    values are spooled, :class:`ReleaseFailed` if the release was lost to
    another request (abandoned) or could be neither stored nor spooled.
    """
    release_id = release.id
    item = spool.Spooled(
        release_id=release_id,
        consumer=consumer,
        dataset=dataset,
        request_id=request_id,
        body=release.stored_document(),
        output=release.ledger_output(),
    )
    values = spool.of(db)
    spooled = False
    if values is not None:
        try:
            values.put(item)
            spooled = True
        except (OSError, ValueError) as exc:  # e.g. the disk is full: store directly
            log.error("could not spool release %s", release_id, exc_info=exc)
    with releases.keep_alive(db, release_id):  # leased while retrying
        for delay in (*COMPLETE_RETRY_DELAYS, None):
            try:
                releases.store_spooled(db, item)
                break
            except releases.Abandoned:  # taken for dead and failed meanwhile: release nothing
                log.error("release %s lost its lease before it completed", release_id)
                if values is not None:
                    values.remove(release_id)
                raise ReleaseFailed.of(release_id) from None
            except Exception as exc:
                log.warning("could not store release %s", release_id, exc_info=exc)
                if delay is None:
                    if spooled:
                        raise ReleasePending(
                            release_id, retry_after=PENDING_RETRY_AFTER_SECONDS
                        ) from None
                    fail(
                        db,
                        release_id=release_id,
                        consumer=consumer,
                        dataset=dataset,
                        reason="store_failed",
                        request_id=request_id,
                    )
                    raise ReleaseFailed.of(release_id) from None
                time.sleep(delay)
    if values is not None:
        values.remove(release_id)
