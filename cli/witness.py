"""``ruis witness`` and ``ruis witness-key``: an auditor who cosigns only consistent views.

A witness pins the log's verifier key and remembers (``--state``) the last checkpoint it
cosigned. Each round it fetches the log's current checkpoint, checks the log's signature,
and then checks that the new tree extends the remembered one: a smaller size, another
root at the same size or a consistency proof that fails is an ALARM (message on stderr,
an evidence file next to the state, the state untouched, exit 3). Otherwise it cosigns
the checkpoint (C2SP tlog-cosignature/v1), posts the cosigned note to the log and then
saves the new state atomically. The first round without a state trusts what it sees.

Exit status: 0 done, 2 unusable local input (key, state file, options), 3 alarm, 4 the
log could not be reached or answered with an error (the state is untouched; try again).
With ``--every`` it repeats the round until an alarm (network errors are reported and
the next round tries again).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from cli.verify import Unusable, read_verifier
from tlog import merkle
from tlog.note import (
    COSIGNATURE_V1,
    ED25519,
    Checkpoint,
    Note,
    NoteError,
    Signer,
    Verifier,
    cosign,
    generate,
    load_private_pem,
    private_pem,
)

EXIT_OK = 0
EXIT_UNUSABLE = 2
EXIT_ALARM = 3
EXIT_UNREACHABLE = 4
DEFAULT_TIMEOUT = 30.0


class Unreachable(Exception):
    """The log could not be asked, or answered with an error: nothing was decided."""


@dataclass(frozen=True)
class State:
    """The last checkpoint this witness cosigned."""

    origin: str
    size: int
    root: bytes
    note: str
    """The cosigned note: the log's signature, the cosignatures it carried and ours."""

    def document(self) -> dict[str, Any]:
        """The state file's JSON."""
        return {
            "origin": self.origin,
            "size": self.size,
            "root": base64.b64encode(self.root).decode("ascii"),
            "note": self.note,
        }

    def describe(self) -> str:
        """``<origin> size <n> root <base64>``."""
        return f"{self.origin} size {self.size} root {self.document()['root']}"


class Alarm(Exception):
    """The log served something inconsistent with what this witness cosigned before."""

    def __init__(self, reason: str, old: State | None, served: str, proof: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.old = old
        self.served = served
        self.proof = proof


def load_state(path: Path) -> State | None:
    """The state in ``path``; None when there is no file yet (first sight); Unusable when
    it cannot be read or does not hold a checkpoint consistent with its own note."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise Unusable(f"cannot read state {path}: {exc}") from None
    try:
        document = json.loads(text)
        state = State(
            origin=str(document["origin"]),
            size=int(document["size"]),
            root=base64.b64decode(document["root"], validate=True),
            note=str(document["note"]),
        )
        checkpoint = Checkpoint.parse(Note.parse(state.note).text)
    except (ValueError, KeyError, TypeError, binascii.Error, NoteError) as exc:
        raise Unusable(f"state {path} is not a witness state: {exc}") from None
    if (checkpoint.origin, checkpoint.size, checkpoint.root) != (
        state.origin,
        state.size,
        state.root,
    ):
        raise Unusable(f"state {path} does not agree with the note it holds")
    return state


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename (a crash leaves the old or the new file)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_state(path: Path, state: State) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same directory, then
    rename)."""
    _write_atomically(path, json.dumps(state.document(), indent=2) + "\n")


def _served(note_text: str) -> dict[str, Any]:
    try:
        checkpoint = Checkpoint.parse(Note.parse(note_text).text)
    except NoteError:
        return {"note": note_text}
    return {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": base64.b64encode(checkpoint.root).decode("ascii"),
        "note": note_text,
    }


def write_evidence(state_path: Path, alarm: Alarm, witness: Witness, now: datetime) -> Path:
    """Write what the alarm is about (both notes, the proof) to a new file next to the
    state; its path."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    document = {
        "alarm": alarm.reason,
        "detected_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "url": witness.url,
        "log_key": witness.log.vkey,
        "witness": witness.signer.verifier.vkey,
        "cosigned_before": alarm.old.document() if alarm.old else None,
        "served_now": _served(alarm.served),
        "consistency_proof": alarm.proof,
    }
    text = json.dumps(document, indent=2) + "\n"
    for attempt in range(1000):
        suffix = f"-{attempt}" if attempt else ""
        path = state_path.with_name(f"{state_path.name}.alarm-{stamp}{suffix}.json")
        try:
            with open(path, "x", encoding="utf-8") as out:
                out.write(text)
            return path
        except FileExistsError:
            continue
    raise OSError(f"cannot name an evidence file next to {state_path}")


def _detail(response: httpx.Response) -> str:
    try:
        problem = response.json()
        return f"{problem.get('title')}: {problem.get('detail')}"
    except (ValueError, AttributeError):
        return " ".join(response.text[:200].split())


def _b64_hashes(document: Any, old: int, new: int) -> list[bytes]:
    """The hashes of a consistency proof document for ``old`` → ``new``; ValueError if it
    is not one."""
    if not isinstance(document, dict):
        raise ValueError("the consistency proof is not a JSON object")
    if document.get("from") != old or document.get("to") != new:
        raise ValueError(
            f"the proof is from {document.get('from')} to {document.get('to')}, "
            f"not from {old} to {new}"
        )
    hashes = document.get("hashes")
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise ValueError("the proof's hashes are not a list of base64 strings")
    decoded = [base64.b64decode(h, validate=True) for h in hashes]
    if any(len(h) != merkle.HASH_SIZE for h in decoded):
        raise ValueError("a proof hash is not 32 bytes")
    return decoded


@dataclass(frozen=True)
class Witness:
    """One witness: the log it watches, its own cosigning key and its state file."""

    url: str
    api_key: str
    log: Verifier
    signer: Signer
    state_path: Path
    clock: Callable[[], float] = time.time

    def _request(
        self, client: httpx.Client, method: str, path: str, **options: Any
    ) -> httpx.Response:
        url = self.url.rstrip("/") + path
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            return client.request(method, url, headers=headers, **options)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise Unreachable(f"{method} {url}: {' '.join(str(exc).split()) or exc!r}") from None

    def _get(self, client: httpx.Client, path: str, **params: int) -> httpx.Response:
        response = self._request(client, "GET", path, params=params or None)
        if response.is_error:
            raise Unreachable(f"GET {path}: HTTP {response.status_code} {_detail(response)}")
        return response

    def _ours(self, note: Note) -> bool:
        """Whether ``note`` already carries this witness's valid cosignature."""
        try:
            note.signed_by(self.signer.verifier, cosignature=True)
        except NoteError:
            return False
        return True

    def round(self, client: httpx.Client) -> str:
        """Fetch, check, cosign, post and remember one checkpoint; what happened, in one
        line. Raises :class:`Alarm` on any inconsistency and :class:`Unreachable` when
        the log cannot be asked; the state is then untouched."""
        served = self._get(client, "/v1/ledger/checkpoint").text
        try:
            note = Note.parse(served)
            checkpoint = Checkpoint.parse(note.text)
        except NoteError as exc:
            raise Unreachable(f"the log's checkpoint is not a signed checkpoint: {exc}") from None
        old = load_state(self.state_path)
        try:
            note.signed_by(self.log)
        except NoteError as exc:
            reason = f"the checkpoint is not signed by the pinned log key: {exc}"
            raise Alarm(reason, old, served) from None
        new = State(checkpoint.origin, checkpoint.size, checkpoint.root, served)
        if old is not None:
            if checkpoint.origin != old.origin:
                raise Alarm(f"the log's origin changed from {old.origin}", old, served)
            if checkpoint.size < old.size:
                raise Alarm(
                    f"the log shrank from {old.size} to {checkpoint.size} entries "
                    "(an older database restored?)",
                    old,
                    served,
                )
            if checkpoint.size == old.size:
                if checkpoint.root != old.root:
                    raise Alarm(
                        f"two different roots for the same size {old.size} (history rewritten)",
                        old,
                        served,
                    )
                if self._ours(note):
                    return f"unchanged: {new.describe()} (already cosigned)"
            elif old.size > 0:
                self._check_consistency(client, old, new)
        cosigned = self._cosign(note, checkpoint)
        self._post(client, cosigned, old)
        save_state(
            self.state_path, State(checkpoint.origin, checkpoint.size, checkpoint.root, cosigned)
        )
        if old is None:
            return f"first sight, trusted without a proof: cosigned {new.describe()}"
        return f"cosigned {new.describe()} (consistent with size {old.size})"

    def _check_consistency(self, client: httpx.Client, old: State, new: State) -> None:
        response = self._get(
            client, "/v1/ledger/proofs/consistency", **{"from": old.size, "to": new.size}
        )
        try:
            document = response.json()
        except ValueError:
            raise Unreachable("the consistency proof is not JSON") from None
        try:
            proof = _b64_hashes(document, old.size, new.size)
            merkle.verify_consistency(old.size, new.size, old.root, new.root, proof)
        except (ValueError, binascii.Error) as exc:  # ProofError is a ValueError
            raise Alarm(
                f"the consistency proof from size {old.size} to {new.size} fails: {exc}",
                old,
                new.note,
                document,
            ) from None

    def _cosign(self, note: Note, checkpoint: Checkpoint) -> str:
        """The note with this witness's cosignature (now) replacing any older one of ours."""
        signature = cosign(checkpoint.text, self.signer, int(self.clock()))
        me = self.signer.verifier
        kept = tuple(s for s in note.signatures if (s.name, s.key_id) != (me.name, me.key_id))
        return Note(note.text, (*kept, signature)).render()

    def _post(self, client: httpx.Client, cosigned: str, old: State | None) -> None:
        body = {"witness": self.signer.verifier.vkey, "checkpoint": cosigned}
        response = self._request(client, "POST", "/v1/ledger/cosignatures", json=body)
        if response.status_code == 409:  # the log denies the checkpoint it just signed
            raise Alarm(f"the log refused its own checkpoint: {_detail(response)}", old, cosigned)
        if response.is_error:
            raise Unreachable(
                f"POST /v1/ledger/cosignatures: HTTP {response.status_code} {_detail(response)}"
            )


def _witness(args: argparse.Namespace, clock: Callable[[], float]) -> Witness:
    url = args.url or os.environ.get("RUIS_URL")
    api_key = args.api_key or os.environ.get("RUIS_API_KEY")
    if not url:
        raise Unusable("--url (or RUIS_URL) is required")
    if not api_key:
        raise Unusable("--api-key (or RUIS_API_KEY) is required: an auditor's key")
    if args.every is not None and args.every <= 0:
        raise Unusable("--every takes a positive number of seconds")
    log = read_verifier(args.log_key, "log key", ED25519)
    try:
        signer = load_private_pem(Path(args.key_file).read_bytes(), args.name, COSIGNATURE_V1)
    except (OSError, NoteError) as exc:
        raise Unusable(f"witness key {args.key_file}: {exc}") from None
    if not Path(args.state).parent.is_dir():
        raise Unusable(f"the state's directory {Path(args.state).parent} does not exist")
    return Witness(url, api_key, log, signer, Path(args.state), clock)


def _alarm(witness: Witness, alarm: Alarm) -> None:
    now = datetime.now(UTC)
    try:
        evidence = str(write_evidence(witness.state_path, alarm, witness, now))
    except OSError as exc:
        evidence = f"NOT WRITTEN ({exc})"
    served = _served(alarm.served)
    served_line = (
        f"{served['origin']} size {served['size']} root {served['root']}"
        if "size" in served
        else "an unreadable note"
    )
    before = alarm.old.describe() if alarm.old else "nothing (no state)"
    print(
        f"ruis witness: ALARM: {alarm.reason}\n"
        f"  cosigned before: {before}\n"
        f"  served now:      {served_line}\n"
        f"  evidence:        {evidence}\n"
        f"  the state {witness.state_path} is unchanged; nothing was cosigned",
        file=sys.stderr,
    )


def one_round(witness: Witness, client: httpx.Client) -> int:
    """One round, reported on stdout/stderr; its exit status."""
    try:
        print(f"ruis witness: {witness.round(client)}", flush=True)
    except Alarm as alarm:
        _alarm(witness, alarm)
        return EXIT_ALARM
    except Unreachable as exc:
        print(f"ruis witness: cannot check the log: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except Unusable as exc:
        print(f"ruis witness: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    return EXIT_OK


def run(
    args: argparse.Namespace,
    client: httpx.Client | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run ``ruis witness`` (one round, or every ``--every`` seconds until an alarm);
    ``client`` replaces the HTTP client (tests, or a transport of one's own), ``clock``
    the POSIX time the cosignatures carry."""
    try:
        witness = _witness(args, clock)
    except Unusable as exc:
        print(f"ruis witness: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    owned = client is None
    http = client if client is not None else httpx.Client(timeout=args.timeout)
    try:
        while True:
            code = one_round(witness, http)
            if args.every is None or code in (EXIT_ALARM, EXIT_UNUSABLE):
                return code
            sleep(args.every)
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if owned:
            http.close()


def run_key(args: argparse.Namespace) -> int:
    """Run ``ruis witness-key``: write a new Ed25519 private key (PEM, mode 0600; an
    existing file is never overwritten) and print the witness's verifier key."""
    try:
        signer = generate(args.name, COSIGNATURE_V1)
    except NoteError as exc:
        print(f"ruis witness-key: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        handle = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"ruis witness-key: {args.out} exists; not overwritten", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"ruis witness-key: cannot create {args.out}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    with os.fdopen(handle, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write(private_pem(signer))
    print(signer.verifier.vkey)
    return EXIT_OK


def add_parser(commands: Any) -> None:
    """Register ``ruis witness`` and ``ruis witness-key``."""
    witness = commands.add_parser(
        "witness",
        help="cosign the log's checkpoints after checking they extend the last one cosigned",
        description=(
            "Fetch the log's checkpoint, check its signature and its consistency with the "
            "last checkpoint cosigned (--state), then cosign and post it. Exit 0 done, "
            "2 unusable input, 3 ALARM (inconsistent log; evidence written next to the "
            "state), 4 log unreachable."
        ),
    )
    witness.add_argument("--url", help="the Ruis server (env RUIS_URL)")
    witness.add_argument("--api-key", help="an auditor's API key (env RUIS_API_KEY)")
    witness.add_argument(
        "--log-key", required=True, help="the log's verifier key (pinned), or a file holding it"
    )
    witness.add_argument(
        "--key-file", required=True, help="the witness's private key (ruis witness-key)"
    )
    witness.add_argument("--name", required=True, help="the witness's key name")
    witness.add_argument(
        "--state", required=True, help="JSON file remembering the last checkpoint cosigned"
    )
    witness.add_argument(
        "--every", type=float, metavar="SECONDS", help="repeat every SECONDS until an alarm"
    )
    witness.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="HTTP timeout in seconds"
    )
    witness.set_defaults(handler=run)
    key = commands.add_parser(
        "witness-key", help="make a witness's Ed25519 key and print its verifier key"
    )
    key.add_argument("--name", required=True, help="the witness's key name, e.g. auditor.example")
    key.add_argument("--out", required=True, help="the private key file to create (mode 0600)")
    key.set_defaults(handler=run_key)
