"""``ruis serve`` (one worker) with the receipts, or the receipts and the Merkle tree, off.

    python -m bench.receipt_server --mode receipts|no-receipts|no-tree --port P

For :mod:`bench.receipts` only; not a product setting. The modes:

- ``receipts``: the app exactly as ``ruis serve`` builds it.
- ``no-receipts``: the app's ``get_log`` dependency overridden to give ``None``, so the
  query routes call ``api.release.run`` / ``reread`` with ``log_signer=None`` and answer
  without a receipt (``"receipt": null``); every ledger append still writes its tree nodes.
- ``no-tree``: as ``no-receipts``, and ``db.ledger_tree.append_leaf`` replaced by a no-op in
  this process, so appends write no tree nodes: the release path as it was before the
  ledger had a tree. The tree of this server's database is incomplete (its proof and
  checkpoint endpoints are not to be used); the database is the bench's scratch one.
"""

from __future__ import annotations

import argparse
import logging.config
import sys
from collections.abc import Sequence

from sqlmodel import Session

from db.models import LedgerHead

MODES = ("receipts", "no-receipts", "no-tree")


def _no_log() -> None:
    """Stands in for ``api.deps.get_log``: no signer, hence no receipt."""
    return None


def _no_leaf(session: Session, head: LedgerHead, index: int, entry_hash: str) -> None:
    """Stands in for ``db.ledger_tree.append_leaf``: the append writes no tree nodes."""
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the app in ``--mode`` on 127.0.0.1 until SIGTERM; 2 on a bad setting."""
    parser = argparse.ArgumentParser(prog="python -m bench.receipt_server")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-level", default="warning")
    parser.add_argument("--workers", type=int, default=1, choices=[1])
    args = parser.parse_args(argv)

    if args.mode == "no-tree":
        from db import ledger_tree

        ledger_tree.append_leaf = _no_leaf  # db.ledger calls it through the module

    from api.app import create_app, prepare
    from api.deps import get_log
    from api.ledger_key import load_or_create
    from api.logs import logging_config
    from api.server import EdgeLimits, run, server_config
    from api.settings import Settings

    try:
        settings = Settings.from_env()
        limits = EdgeLimits.from_env()
        load_or_create(settings.ledger_key_path, settings.ledger_origin)
    except ValueError as exc:
        print(f"bench.receipt_server: {exc}", file=sys.stderr)
        return 2
    log_config = logging_config(args.log_level)
    logging.config.dictConfig(log_config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(settings)
    app = create_app(settings)
    if args.mode != "receipts":
        app.dependency_overrides[get_log] = _no_log
    run(
        server_config(
            app,
            host=args.host,
            port=args.port,
            limits=limits,
            log_level=args.log_level,
            log_config=log_config,
            access_log=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
