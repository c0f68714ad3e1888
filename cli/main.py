"""The ``ruis`` command: ``serve``, ``demo`` and ``admin``."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from cli import admin, demo


def _serve(args: argparse.Namespace) -> int:
    from api.app import create_app, prepare
    from api.settings import Settings

    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    prepare(settings)  # migrate once before the workers start
    if args.workers > 1:
        uvicorn.run("api.asgi:app", host=args.host, port=args.port, workers=args.workers,
                    log_level=args.log_level)
    else:
        uvicorn.run(create_app(settings), host=args.host, port=args.port,
                    log_level=args.log_level)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``ruis``."""
    parser = argparse.ArgumentParser(prog="ruis", description="Differentially private "
                                     "aggregate queries with a privacy budget ledger.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(handler=_serve)
    demo.add_parser(commands)
    admin.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ruis`` command."""
    args = build_parser().parse_args(argv)
    handler = args.handler
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
