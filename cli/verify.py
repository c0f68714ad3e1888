"""``ruis verify``: check a ledger export offline against signed checkpoints.

No server and no database: the export (JSON lines, one entry document per line, oldest
first, as ``GET /v1/ledger/export?format=jsonl`` writes it), one or more checkpoint notes
and the log's verifier key are all it reads. It checks, in this order:

1. every checkpoint is a signed note whose body is a tlog checkpoint, signed by the log's
   key, and cosigned by every ``--witness`` key;
2. the export, streamed line by line: every line is one JSON object, the seqs are
   1, 2, 3, … without a gap, every ``hash`` is the SHA-256 of the entry's canonical JSON
   without ``hash``, every ``prev_hash`` is the previous entry's ``hash`` (64 zeros first);
3. the RFC 9162 Merkle root of the first ``size`` entries equals each checkpoint's root,
   and the export reaches every checkpoint's size.

Only the O(log n) perfect-subtree hashes that make up the current tree are kept while
streaming (:class:`tlog.merkle.Frontier`), never the entries. Exit status: 0 valid (one summary line
on stdout), 1 something does not verify (the reason and first bad seq on stderr), 2 the
input cannot be used (a missing file, a malformed key or checkpoint).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.ledger import GENESIS_HASH, compute_hash
from tlog import merkle
from tlog.note import COSIGNATURE_V1, ED25519, Checkpoint, Note, NoteError, Verifier

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNUSABLE = 2
HEX = frozenset("0123456789abcdef")


class Unusable(Exception):
    """Input that cannot be checked at all (exit status 2); the message says why."""


def read_verifier(value: str, what: str, signature_type: int) -> Verifier:
    """The verifier key ``value`` (its text, or a file holding it) of ``signature_type``;
    :class:`Unusable` when it is neither a readable file nor a well-formed key of that type."""
    try:
        verifier = Verifier.parse(value)
    except NoteError as text_error:
        path = Path(value)
        if not path.is_file():
            raise Unusable(
                f"{what} {value[:80]!r} is neither a verifier key ({text_error}) nor a file"
            ) from None
        try:
            verifier = Verifier.parse(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, NoteError) as exc:
            raise Unusable(f"{what} file {value}: {exc}") from None
    if verifier.signature_type != signature_type:
        kind = "a witness (cosignature, type 0x04)" if signature_type == COSIGNATURE_V1 else "a log"
        raise Unusable(f"{what} {verifier.name} is not {kind} key")
    return verifier


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint note read from a file."""

    source: str
    note: Note
    checkpoint: Checkpoint

    @property
    def root_b64(self) -> str:
        """The root hash as the checkpoint writes it."""
        return base64.b64encode(self.checkpoint.root).decode("ascii")


def load_checkpoint(path: str) -> SignedCheckpoint:
    """The checkpoint note in the file ``path``; :class:`Unusable` when it is missing or
    not a signed note whose text is a tlog checkpoint."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read checkpoint {path}: {exc}") from None
    try:
        note = Note.parse(text)
        return SignedCheckpoint(path, note, Checkpoint.parse(note.text))
    except NoteError as exc:
        raise Unusable(f"checkpoint {path} is not a signed checkpoint note: {exc}") from None


def signature_problem(
    signed: SignedCheckpoint, log: Verifier, witnesses: Iterable[Verifier]
) -> str | None:
    """Why ``signed`` is not signed by ``log`` and cosigned by every witness (None if it is)."""
    try:
        signed.note.signed_by(log)
    except NoteError as exc:
        return f"checkpoint {signed.source}: {exc} (log key {log.name}+{log.key_id.hex()})"
    for witness in witnesses:
        try:
            signed.note.signed_by(witness, cosignature=True)
        except NoteError as exc:
            return f"checkpoint {signed.source}: {exc} (witness {witness.name})"
    return None


@dataclass
class Chain:
    """What streaming the export found."""

    entries: int = 0
    """Entries read whose chain verified: seqs 1..entries."""
    roots: dict[int, bytes] = field(default_factory=dict)
    """The Merkle root after each wanted size that the verified entries reach."""
    bad_seq: int | None = None
    reason: str | None = None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:  # two parsers could read two different entries
            raise ValueError(f"duplicate key {key!r}")
        document[key] = value
    return document


def _entry_problem(line: bytes, seq: int, previous: str) -> tuple[str | None, str]:
    """Why ``line`` is not entry ``seq`` chained to ``previous`` (None if it is) and its hash."""
    try:
        document = json.loads(line.decode("utf-8"), object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        return f"not a JSON entry ({' '.join(str(exc).split())[:120]})", ""
    if not isinstance(document, dict):
        return "not a JSON object", ""
    got = document.get("seq")
    if type(got) is not int:
        return "has no integer seq", ""
    if got != seq:
        if got > seq:
            return f"holds seq {got}: seq {seq} is missing", ""
        return f"holds seq {got} where seq {seq} belongs (out of order or repeated)", ""
    digest = document.get("hash")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= HEX:
        return "has no hash of 64 lowercase hex digits", ""
    try:
        computed = compute_hash(document)
    except ValueError as exc:  # NaN or infinity cannot be hashed canonically
        return f"cannot be hashed canonically ({exc})", ""
    if computed != digest:
        return "hash does not match its content (edited?)", digest
    if document.get("prev_hash") != previous:
        return "prev_hash is not the previous entry's hash", digest
    return None, digest


def check_chain(lines: Iterable[bytes], sizes: Iterable[int]) -> Chain:
    """Stream ``lines`` (an export, bytes per line): the verified prefix, the Merkle root
    at each of ``sizes`` it reaches, and the first bad seq with the reason when the chain
    breaks. Empty lines are allowed only at the end."""
    wanted = set(sizes)
    chain = Chain()
    tree = merkle.Frontier()
    if 0 in wanted:
        chain.roots[0] = tree.root()
    previous = GENESIS_HASH
    blank_line = 0
    for number, line in enumerate(lines, start=1):
        seq = chain.entries + 1
        if not line.strip():
            blank_line = blank_line or number
            continue
        if blank_line:
            chain.bad_seq, chain.reason = seq, f"line {blank_line} (seq {seq}) is empty"
            return chain
        problem, digest = _entry_problem(line, seq, previous)
        if problem is not None:
            chain.bad_seq, chain.reason = seq, f"line {number} (seq {seq}): {problem}"
            return chain
        tree.append(merkle.leaf_hash(bytes.fromhex(digest)))
        previous = digest
        chain.entries = seq
        if seq in wanted:
            chain.roots[seq] = tree.root()
    return chain


@dataclass
class Report:
    """The outcome of one ``ruis verify``."""

    valid: bool
    entries: int = 0
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    witnesses: list[str] = field(default_factory=list)
    first_bad_seq: int | None = None
    first_bad_range: tuple[int, int] | None = None
    reason: str | None = None
    usable: bool = True

    def summary(self) -> str:
        """One line: what verified, or why not and where."""
        if not self.valid:
            where = ""
            if self.first_bad_range is not None:
                low, high = self.first_bad_range
                where = (
                    f"first bad seq: {low}"
                    if low == high
                    else f"first bad seq between {low} and {high}"
                )
            return f"{self.reason}; {where}" if where else f"{self.reason}"
        largest = max(self.checkpoints, key=lambda c: int(c["size"]))
        counted = (
            f"{len(self.checkpoints)} checkpoints, largest: " if len(self.checkpoints) > 1 else ""
        )
        line = (
            f"ok: {self.entries} entries, {counted}checkpoint size {largest['size']}, "
            f"root {largest['root']}"
        )
        if self.witnesses:
            line += f", cosigned by {', '.join(self.witnesses)}"
        if self.entries > largest["size"]:
            line += f" (seqs {largest['size'] + 1}..{self.entries} are in no checkpoint)"
        return line

    def document(self) -> dict[str, Any]:
        """The report as JSON (``--json``)."""
        return {
            "valid": self.valid,
            "usable": self.usable,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "witnesses": self.witnesses,
            "first_bad_seq": self.first_bad_seq,
            "first_bad_range": list(self.first_bad_range) if self.first_bad_range else None,
            "reason": self.reason,
            "summary": self.summary(),
        }


def _bad(report: Report, low: int, high: int, reason: str) -> Report:
    report.valid = False
    report.first_bad_seq, report.first_bad_range, report.reason = low, (low, high), reason
    return report


def verify_export(
    lines: Iterable[bytes],
    checkpoints: list[SignedCheckpoint],
    log: Verifier,
    witnesses: list[Verifier],
) -> Report:
    """Check ``lines`` (an export) against ``checkpoints`` signed by ``log`` and cosigned by
    every witness. The report is valid only when every signature verifies, the whole chain
    verifies, the export reaches every checkpoint's size and every root matches.
    Otherwise it names the first bad seq (or the range holding it, when the chain is
    internally valid but a root does not match: after the largest matching checkpoint
    size, at or before the smallest mismatching one)."""
    report = Report(valid=True, witnesses=[w.name for w in witnesses])
    report.checkpoints = [
        {"file": c.source, "size": c.checkpoint.size, "root": c.root_b64, "matches": None}
        for c in checkpoints
    ]
    for signed in checkpoints:
        problem = signature_problem(signed, log, witnesses)
        if problem is not None:
            report.valid, report.reason = False, problem
            return report
    origins = {c.checkpoint.origin for c in checkpoints}
    if len(origins) > 1:
        report.valid = False
        report.reason = f"the checkpoints name different logs: {', '.join(sorted(origins))}"
        return report
    chain = check_chain(lines, (c.checkpoint.size for c in checkpoints))
    report.entries = chain.entries
    matched: list[int] = []
    mismatched: list[tuple[int, str]] = []
    for signed, row in zip(checkpoints, report.checkpoints, strict=True):
        root = chain.roots.get(signed.checkpoint.size)
        if root is not None:
            row["matches"] = root == signed.checkpoint.root
            if row["matches"]:
                matched.append(signed.checkpoint.size)
            else:
                mismatched.append((signed.checkpoint.size, signed.source))
    if mismatched:
        high, source = min(mismatched)
        low = max((s for s in matched if s < high), default=0) + 1
        reason = (
            f"the Merkle root of the export's first {high} entries does not match checkpoint "
            f"{source} (size {high}): an entry at or before seq {high} was changed"
        )
        if chain.bad_seq is not None:
            reason += f"; the chain also breaks at seq {chain.bad_seq}"
        split = sorted(s for s in matched if s >= high)
        if split:
            reason += (
                f"; yet the checkpoint of size {split[0]} matches: the log signed checkpoints "
                "that are not consistent with each other"
            )
        return _bad(report, low, high, reason)
    if chain.bad_seq is not None:
        return _bad(report, chain.bad_seq, chain.bad_seq, chain.reason or "the chain breaks")
    covered = max(c.checkpoint.size for c in checkpoints)
    if covered > chain.entries:
        missing = chain.entries + 1
        reason = (
            f"the export ends at seq {chain.entries} but the checkpoint covers {covered} "
            f"entries (the tail from seq {missing} is missing)"
        )
        return _bad(report, missing, missing, reason)
    return report


def _lines(path: str) -> Iterator[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as export:
        yield from export


def run(args: argparse.Namespace) -> int:
    """Run ``ruis verify``: print the summary (or the JSON report) and return the exit status."""
    try:
        log = read_verifier(args.key, "log key", ED25519)
        witnesses = [read_verifier(w, "witness key", COSIGNATURE_V1) for w in args.witness]
        checkpoints = [load_checkpoint(path) for path in args.checkpoint]
        if args.export != "-" and not Path(args.export).is_file():
            raise Unusable(f"cannot read export {args.export}: no such file")
        report = verify_export(_lines(args.export), checkpoints, log, witnesses)
    except (Unusable, OSError) as exc:
        report = Report(valid=False, usable=False, reason=" ".join(str(exc).split()))
    if args.json:
        print(json.dumps(report.document(), indent=2))
    elif report.valid:
        print(report.summary())
    if not report.valid:
        print(f"ruis verify: {report.summary()}", file=sys.stderr)
    if not report.usable:
        return EXIT_UNUSABLE
    return EXIT_VALID if report.valid else EXIT_INVALID


def add_parser(commands: Any) -> None:
    """Register ``ruis verify``."""
    verify = commands.add_parser(
        "verify",
        help="check a ledger export offline against signed checkpoints (no server)",
        description=(
            "Check a JSONL ledger export (GET /v1/ledger/export?format=jsonl, unfiltered) "
            "against signed checkpoints: the hash chain, every entry's hash and the Merkle "
            "root. Exit 0 valid, 1 does not verify (the first bad seq is named), 2 unusable "
            "input."
        ),
    )
    verify.add_argument("export", help="the JSONL export ('-' for stdin)")
    verify.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        metavar="FILE",
        help="a checkpoint note (GET /v1/ledger/checkpoint); repeat for several",
    )
    verify.add_argument(
        "--key", required=True, help="the log's verifier key (GET /v1/ledger/key), or a file"
    )
    verify.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="VKEY",
        help="a witness verifier key (or file) that must have cosigned every checkpoint",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=run)
