"""What the client remembers of the ledger, and how it checks each receipt against it.

:class:`LedgerWatch` holds the ledger's verifier key (pinned, or trusted on first use)
and the last checkpoint the client saw (in memory and, with a checkpoint file, on
disk). Each receipt must check out on its own (:mod:`ruis_client._receipts`) and its
checkpoint must extend the last one: same size and root, or a larger tree with a
consistency proof from the last one. Anything else is reported (a warning, or an
exception with ``on_inconsistency="raise"``), recorded in :attr:`LedgerWatch.inconsistencies`,
and the last checkpoint is kept as it was: the evidence.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from ruis_client import _checkpoint_file, _receipts
from ruis_client._exceptions import (
    LedgerInconsistency,
    LedgerInconsistencyWarning,
    ReceiptInvalid,
    ReceiptInvalidWarning,
    RuisError,
    SignatureUncheckedWarning,
)
from ruis_client._models import Checkpoint, Release
from tlog import merkle, note

OnInconsistency = Literal["warn", "raise"]
FetchKey = Callable[[], str]
"""Reads the server's verifier key text (``GET /v1/ledger/key``); RuisError on failure."""
FetchConsistency = Callable[[int, int], Sequence[str]]
"""Reads the base64 hashes of the consistency proof from one size to another; RuisError
on failure."""

_PACKAGE = __name__.rpartition(".")[0]
UNSIGNED = (
    "install the verify extra to check the ledger's signature: "
    'pip install "ruis-client[verify]" (from a Ruis checkout: pip install "./client[verify]")'
)


def _caller_level() -> int:
    """The ``stacklevel`` that makes a warning point at the first caller outside this
    package (the analyst's ``ruis.query(...)``), for a warning given by our caller."""
    frame = sys._getframe(1)  # the function calling warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        _PACKAGE + "."
    ):
        frame = frame.f_back
        level += 1
    return level


def _decode(hashes: Sequence[str]) -> list[bytes]:
    try:
        return [base64.b64decode(h.encode("ascii"), validate=True) for h in hashes]
    except (binascii.Error, UnicodeEncodeError, ValueError, AttributeError):
        raise merkle.ProofError("the proof is not base64 hashes") from None


class LedgerWatch:
    """The ledger key and the last checkpoint one client trusts; checks receipts.

    ``key`` pins the ledger's verifier key; without it the server's is read once per
    client (``fetch_key``) and trusted on first use: remembered in ``path`` (when given),
    and a different one later is an inconsistency. Safe to share between threads."""

    def __init__(
        self,
        *,
        key: str | None,
        path: Path | None,
        on_inconsistency: OnInconsistency,
        fetch_key: FetchKey,
        fetch_consistency: FetchConsistency,
    ) -> None:
        if on_inconsistency not in ("warn", "raise"):
            raise ValueError('on_inconsistency is "warn" or "raise"')
        try:
            self._pinned = note.Verifier.parse(key) if key is not None else None
        except note.NoteError as exc:
            raise ValueError(f"ledger_key is not a verifier key: {exc}") from None
        self._path = path
        remembered = _checkpoint_file.load(path) if path else _checkpoint_file.Remembered()
        try:
            self._remembered = note.Verifier.parse(remembered.key) if remembered.key else None
        except note.NoteError as exc:
            raise ValueError(f"checkpoint file {path}: not a verifier key: {exc}") from None
        self._last = remembered.checkpoint
        self._key: note.Verifier | None = self._pinned
        self._server_key_read = False
        self._policy = on_inconsistency
        self._fetch_key = fetch_key
        self._fetch_consistency = fetch_consistency
        self._inconsistencies: list[LedgerInconsistency] = []
        self._lock = threading.RLock()
        self._signatures = note.signatures_available()
        self._warned_unsigned = False

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        """The newest checkpoint seen that was consistent with every earlier one."""
        return self._last

    @property
    def inconsistencies(self) -> list[LedgerInconsistency]:
        """Every inconsistency and invalid receipt reported so far, oldest first."""
        with self._lock:
            return list(self._inconsistencies)

    @property
    def key(self) -> str | None:
        """The verifier key receipts are checked with (None before it is known)."""
        return self._key.vkey if self._key else None

    def verified(self, release: Release) -> Release:
        """``release`` with ``verified=True`` when its receipt checks out and its checkpoint
        extends the last one seen (which it then becomes); otherwise reported and
        returned as it is (``verified=False``). Without the ``cryptography`` package the
        receipt's entry and inclusion proof are checked (a failure is reported), not the
        signature: the release stays unverified, the checkpoint is not remembered, and
        the client warns once (:class:`SignatureUncheckedWarning`)."""
        with self._lock:
            key = self._trusted_key(release)
            if key is None:
                return release
            try:
                point = _receipts.check(release, key, signature=self._signatures)
            except _receipts.ReceiptError as exc:
                self._report(
                    ReceiptInvalid(
                        f"the receipt of release {release.id} does not check out: {exc}",
                        old=self._last,
                        release=release,
                    )
                )
                return release
            if not self._signatures:
                self._warn_unsigned()
                return release
            if not self._extends(point, release):
                return release
            return dataclasses.replace(release, verified=True)

    def _warn_unsigned(self) -> None:
        if not self._warned_unsigned:
            self._warned_unsigned = True
            warnings.warn(SignatureUncheckedWarning(UNSIGNED), stacklevel=_caller_level())

    # -- the key ------------------------------------------------------------------------

    def _trusted_key(self, release: Release) -> note.Verifier | None:
        if self._pinned is not None:
            if self._remembered != self._pinned:  # the pinned key is the one to remember
                self._remembered = self._pinned
                self._save()
            return self._pinned
        if not self._server_key_read:
            self._read_server_key(release)
        return self._key

    def _read_server_key(self, release: Release) -> None:
        """Read the server's key once: trust it if none is remembered, else compare."""
        remembered = self._remembered
        try:
            served: note.Verifier | None = note.Verifier.parse(self._fetch_key())
        except (RuisError, note.NoteError) as exc:
            if remembered is None:
                self._report(
                    ReceiptInvalid(
                        f"the receipt of release {release.id} cannot be checked: "
                        f"no ledger key ({exc})",
                        old=self._last,
                        release=release,
                    )
                )
                return
            served = None
        self._server_key_read = True
        if remembered is None:
            assert served is not None
            self._key = self._remembered = served  # trust on first use
            self._save()
            return
        self._key = remembered
        if served is not None and served != remembered:
            self._report(
                LedgerInconsistency(
                    f"the server's ledger key is now {served.vkey}, not the {remembered.vkey} "
                    "this client trusts (receipts are checked with that one)",
                    old=self._last,
                    release=release,
                )
            )

    # -- the checkpoint -----------------------------------------------------------------

    def _extends(self, point: Checkpoint, release: Release) -> bool:
        last = self._last
        if last is None:
            self._accept(point)
            return True
        if point.size == last.size:
            if point.root == last.root:
                return True
            return self._inconsistent(point, release, "two roots for the same size")
        old, new = (last, point) if point.size > last.size else (point, last)
        try:
            proof = _decode(self._fetch_consistency(old.size, new.size))
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except (RuisError, merkle.ProofError) as exc:
            reason = (
                f"no consistency proof from size {old.size} to {new.size}: {exc}"
                if isinstance(exc, RuisError)
                else f"the consistency proof fails: {exc}"
            )
            if point.size < last.size:
                reason = f"a smaller tree that is not a prefix of the last one ({reason})"
            return self._inconsistent(point, release, reason)
        if point.size > last.size:
            self._accept(point)
        # a smaller, consistent tree is an older view (an answer overtaken by another)
        return True

    def _inconsistent(self, point: Checkpoint, release: Release, reason: str) -> bool:
        self._report(
            LedgerInconsistency(
                f"the ledger's checkpoint for release {release.id} ({point}) is not "
                f"consistent with the last one this client saw ({self._last}): {reason}",
                old=self._last,
                new=point,
                release=release,
            )
        )
        return False

    def _accept(self, point: Checkpoint) -> None:
        self._last = point
        self._save()

    def _save(self) -> None:
        if self._path is not None:
            key = self._remembered.vkey if self._remembered else None
            remembered = _checkpoint_file.Remembered(key=key, checkpoint=self._last)
            _checkpoint_file.save(self._path, remembered)

    # -- reporting ----------------------------------------------------------------------

    def _report(self, error: LedgerInconsistency) -> None:
        self._inconsistencies.append(error)
        if self._policy == "raise":
            raise error
        category = ReceiptInvalidWarning if isinstance(error, ReceiptInvalid) else None
        warning = (category or LedgerInconsistencyWarning)(error)
        warnings.warn(warning, stacklevel=_caller_level())
