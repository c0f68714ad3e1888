"""The ledger's signing key (read from ``RUIS_LEDGER_KEY_FILE`` or made at first start)
and the checkpoints it signs.

The file is an unencrypted PKCS#8 PEM Ed25519 private key. When it does not exist it
is generated and written with mode 0600 by an atomic link, so several workers
starting at once all end up with the one key that won. Replicas must share the file
(mount the same secret); a different key is a different log to every witness.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from tlog import note

log = logging.getLogger("ruis.ledger")


def load_or_create(path: Path, origin: str) -> note.Signer:
    """The Ed25519 signer named ``origin`` whose key is in ``path``, creating it (mode 0600)
    when absent. ValueError when the file holds no Ed25519 private key."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _create(path, origin)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("the ledger key %s is readable by others (mode %o); chmod 600 it", path, mode)
    try:
        return note.load_private_pem(data, origin)
    except note.NoteError as exc:
        raise ValueError(f"RUIS_LEDGER_KEY_FILE {path}: {exc}") from None


def _create(path: Path, origin: str) -> note.Signer:
    signer = note.generate(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(note.private_pem(signer))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)  # fails if another process made the key first
        except FileExistsError:
            return note.load_private_pem(path.read_bytes(), origin)
    finally:
        temporary.unlink(missing_ok=True)
    log.info("made the ledger signing key %s; verifier key %s", path, signer.verifier.vkey)
    return signer


class LogSigner:
    """The ledger's signing key and origin: signs checkpoints (the newest few cached).

    It also keeps what receipts read that never changes: tree nodes (``nodes``) and
    ledger entries' documents (``entries``), bounded (cleared when full). One per app,
    so per database."""

    MAX_NODES = 100_000
    MAX_ENTRIES = 2_000

    def __init__(self, signer: note.Signer) -> None:
        self.signer = signer
        self.origin = signer.name
        self._signed = functools.lru_cache(maxsize=256)(self._sign)
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.entries: dict[int, dict[str, Any]] = {}

    def trim(self) -> None:
        """Forget the kept nodes and entries when there are more than the bounds."""
        if len(self.nodes) > self.MAX_NODES:
            self.nodes.clear()
        if len(self.entries) > self.MAX_ENTRIES:
            self.entries.clear()

    @property
    def vkey(self) -> str:
        """The verifier key text of the ledger's checkpoints."""
        return self.signer.verifier.vkey

    def _sign(self, size: int, root: bytes) -> note.Note:
        return note.sign(note.Checkpoint(self.origin, size, root).text, self.signer)

    def checkpoint(self, size: int, root: bytes, cosigned: tuple[str, ...] = ()) -> str:
        """The signed checkpoint note at ``size``, then the stored cosignature lines."""
        signed = self._signed(size, root)
        return signed.render() + "".join(cosigned)
