"""The ``ruis`` command: ``serve``, ``demo``, ``admin`` and ``openapi``."""

from __future__ import annotations

import argparse
import inspect
import json
import logging.config
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn

from cli import admin, demo, verify, witness

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
WORKER_STARTUP_SECONDS = 60


def _share_metrics_between_workers() -> None:
    """Prometheus multiprocess mode: every worker writes its counters to files in one
    directory and each scrape sums them. Must run before ``prometheus_client`` is imported."""
    directory = os.environ.get(METRICS_DIR_ENV)
    if directory:
        for stale in Path(directory).glob("*.db"):  # left by an earlier run
            stale.unlink()
    else:
        os.environ[METRICS_DIR_ENV] = tempfile.mkdtemp(prefix="ruis-metrics-")


def _serve(args: argparse.Namespace) -> int:
    if args.workers > 1:
        _share_metrics_between_workers()
    from api.app import create_app, prepare
    from api.ledger_key import load_or_create
    from api.logs import logging_config
    from api.server import EdgeLimits, run, server_config
    from api.settings import Settings
    from db.bootstrap import check_bootstrap_key

    try:  # before anything starts: a bad setting stops here, with one line saying why
        settings = Settings.from_env()
        limits = EdgeLimits.from_env()
        if settings.bootstrap_admin_key:
            check_bootstrap_key(settings.bootstrap_admin_key)
        # made (or read) once here, before any worker starts: every worker signs with it
        signer = load_or_create(settings.ledger_key_path, settings.ledger_origin)
    except (ValueError, OSError) as exc:  # OSError: the key file cannot be read or made
        print(f"ruis serve: {exc}", file=sys.stderr)
        return 2
    log_config = logging_config(args.log_level)
    logging.config.dictConfig(log_config)
    logging.getLogger("ruis.ledger").info(
        "ledger checkpoints are signed with %s (verifier key %s)",
        settings.ledger_key_path,
        signer.verifier.vkey,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(settings)  # migrate once before the workers start
    options: dict[str, Any] = {
        "log_level": args.log_level,
        "log_config": log_config,
        "access_log": False,
    }
    if args.workers > 1:
        if "timeout_worker_healthcheck" in inspect.signature(uvicorn.Config).parameters:
            # A worker imports OpenDP and Polars before it answers the supervisor's
            # health check; the default 5 s gets it killed and restarted on a busy host.
            options["timeout_worker_healthcheck"] = WORKER_STARTUP_SECONDS
        run(
            server_config(
                "api.asgi:app",
                host=args.host,
                port=args.port,
                limits=limits,
                workers=args.workers,
                **options,
            )
        )
    else:
        run(
            server_config(
                create_app(settings), host=args.host, port=args.port, limits=limits, **options
            )
        )
    return 0


def openapi_document() -> str:
    """The OpenAPI document the app serves, as sorted, indented JSON (independent of the
    environment: no database is opened)."""
    from api.app import create_app
    from api.settings import Settings

    app = create_app(Settings(database_url="sqlite://", data_dir=Path(".")))
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _openapi(args: argparse.Namespace) -> int:
    document = openapi_document()
    if args.output:
        Path(args.output).write_text(document, encoding="utf-8")
    else:
        sys.stdout.write(document)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ruis``."""
    parser = argparse.ArgumentParser(
        prog="ruis",
        description="Differentially private aggregate queries with a privacy budget ledger.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(handler=_serve)
    openapi = commands.add_parser("openapi", help="print the OpenAPI document (JSON)")
    openapi.add_argument("--output", "-o", help="write it to this file instead of stdout")
    openapi.set_defaults(handler=_openapi)
    demo.add_parser(commands)
    admin.add_parser(commands)
    verify.add_parser(commands)
    witness.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ruis`` command."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
