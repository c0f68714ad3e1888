"""The checkpoint file: the ledger key and the last checkpoint a client saw, across runs.

A small JSON document, ``{"version": 1, "key": <vkey or null>, "checkpoint": <signed
note or null>, "size": n, "root": <base64>}`` (``size`` and ``root`` repeat the note's,
for whoever reads the file). It is written whole to a temporary file in the same
directory, flushed, then renamed over the old one, so a reader sees the old or the new
document and never a mix.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruis_client._models import Checkpoint
from tlog import note

VERSION = 1


@dataclass(frozen=True)
class Remembered:
    """What the file holds: the ledger's verifier key and the last checkpoint seen."""

    key: str | None = None
    checkpoint: Checkpoint | None = None


def _checkpoint(text: str) -> Checkpoint:
    point = note.Checkpoint.parse(note.Note.parse(text).text)
    return Checkpoint(size=point.size, root=point.root, note=text)


def load(path: Path) -> Remembered:
    """What ``path`` remembers; nothing when it does not exist. ValueError when it is not
    a checkpoint file (or its size and root are not its note's)."""
    try:
        document: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Remembered()
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"checkpoint file {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ValueError(f"checkpoint file {path}: not a version {VERSION} checkpoint file")
    key, text = document.get("key"), document.get("checkpoint")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"checkpoint file {path}: the key is not a verifier key text")
    if text is None:
        return Remembered(key=key)
    try:
        if not isinstance(text, str):
            raise note.NoteError("the checkpoint is not a note's text")
        point = _checkpoint(text)
    except note.NoteError as exc:
        raise ValueError(f"checkpoint file {path}: {exc}") from None
    if document.get("size") != point.size or document.get("root") != point.root_base64:
        raise ValueError(f"checkpoint file {path}: its size and root are not its note's")
    return Remembered(key=key, checkpoint=point)


def save(path: Path, remembered: Remembered) -> None:
    """Write ``remembered`` to ``path`` atomically (temporary file, fsync, rename)."""
    point = remembered.checkpoint
    document = {
        "version": VERSION,
        "key": remembered.key,
        "checkpoint": point.note if point else None,
        "size": point.size if point else None,
        "root": point.root_base64 if point else None,
    }
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with temporary.open("x", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
