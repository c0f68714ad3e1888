"""The README's user guide runs as pasted against ``make demo``: every block marked
``<!-- readme-test -->`` is executed in order — shell blocks with bash (``curl``, ``ruis
admin``), Python blocks with ``exec`` — against a real server that the demo's own code
(``cli.demo.setup``, with ``ruis demo``'s defaults) has set up, as one shell session would:
what a block exports (``source .venv/bin/activate``, the keys) holds for the blocks after
it. The blocks run in a scratch directory standing in for the repository: ``.venv`` is the
venv running the tests and ``ruis-demo`` the server's data directory; the demo's URL
``http://127.0.0.1:8000`` is replaced by the test server's.

A marker may capture a field of the block's JSON output into an environment variable for
the blocks after it: ``<!-- readme-test capture=TOURISM_KEY:api_key -->``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import demo
from tests.conftest import Service

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(
    r"<!-- readme-test(?P<options>[^>]*?)\s*-->\n```(?P<lang>\w+)\n"
    r"(?P<code>.*?)\n```",
    re.DOTALL,
)
CAPTURE = re.compile(r"capture=(?P<var>[A-Z_]+):(?P<field>\w+)")
DEMO_URL = "http://127.0.0.1:8000"
SHELL_ONLY = {"_", "SHLVL", "PWD", "OLDPWD"}  # bash's own, not the session's exports

# the examples run as subprocesses (curl, ruis admin, python) against a URL
pytestmark = [
    pytest.mark.live,
    # the Spark example: PySpark's collect leaves its local result sockets to the collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@dataclass(frozen=True)
class Block:
    """One tested README block."""

    line: int
    lang: str
    code: str
    captures: dict[str, str]


def readme_blocks() -> list[Block]:
    """The marked blocks of the README, in order."""
    text = README.read_text(encoding="utf-8")
    return [
        Block(
            line=text.count("\n", 0, match.start()) + 1,
            lang=match["lang"],
            code=match["code"],
            captures={c["var"]: c["field"] for c in CAPTURE.finditer(match["options"])},
        )
        for match in BLOCK.finditer(text)
    ]


def test_every_role_has_tested_examples() -> None:
    blocks = readme_blocks()
    assert {b.lang for b in blocks} == {"sh", "python"}
    code = "\n".join(b.code for b in blocks)
    for needle in (
        "/v1/consumers",
        "register-dataset",
        "/v1/budgets/",  # admin
        "/v1/queries/preview",
        '/v1/queries"',
        "from ruis_client import",  # analyst
        "/v1/ledger/verify",
        "/v1/ledger/export",
    ):  # auditor
        assert needle in code, needle
    marked = README.read_text(encoding="utf-8").count("<!-- readme-test")
    assert marked == len(blocks) + 1  # every marker is followed by a block (+ the prose one)
    # it starts from the demo: its keys, and nothing the demo already made is made again
    assert "source .venv/bin/activate" in blocks[0].code
    assert f"export RUIS_URL={DEMO_URL}" in blocks[0].code
    assert f"ruis-demo/{demo.KEYS_FILE}" in blocks[0].code
    for name in (demo.ADMIN, demo.ANALYST, demo.AUDITOR):
        assert name in blocks[0].code
        assert f'"name": "{name}"' not in code
        assert f"create-consumer {name}" not in code
    for dataset in ("mobility_events", "residents"):
        assert f'"name": "{dataset}"' not in code


def demo_args() -> argparse.Namespace:
    """The arguments of a plain ``ruis demo`` (what ``make demo`` runs)."""
    parser = argparse.ArgumentParser()
    demo.add_parser(parser.add_subparsers())
    return parser.parse_args(["demo"])


def _session_env(path: Path) -> dict[str, str]:
    """The environment ``env -0`` wrote: what the block left exported."""
    pairs = (item.partition("=") for item in path.read_text().split("\0") if item)
    return {key: value for key, _, value in pairs if key not in SHELL_ONLY}


@pytest.mark.slow  # the demo's data, then every README example in subprocesses
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_readme_examples_run(
    server: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, query, _ = demo.setup(server.settings, demo_args())
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (tmp_path / "ruis-demo").symlink_to(server.settings.data_dir, target_is_directory=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RUIS_")
        and key not in {"PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "ANALYST_KEY", "AUDITOR_KEY"}
    }
    exported = tmp_path / ".readme-env"
    monkeypatch.chdir(tmp_path)
    for block in readme_blocks():
        where = f"README.md line {block.line}"
        code = block.code.replace(DEMO_URL, server.url)
        if block.lang == "sh":
            done = subprocess.run(
                [
                    "bash",
                    "-euo",
                    "pipefail",
                    "-c",
                    f"{code}\nenv -0 > {shlex.quote(str(exported))}",
                ],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
            output = done.stdout
            env = _session_env(exported)
        else:
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(code, where, "exec"), {"__name__": "__readme__"})
            output = printed.getvalue()
        for variable, field in block.captures.items():
            env[variable] = json.loads(output)[field]
    assert env["ANALYST_KEY"] == keys[demo.ANALYST]  # the guide used the demo's keys
    assert json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[-1])["kind"]

    # the banner's Python example (the client) runs against the same demo
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        example = demo.python_example(server.url, keys[demo.ANALYST], query)
        exec(compile(example, "the demo banner", "exec"), {"__name__": "__banner__"})
    assert "shape:" in printed.getvalue()  # the release's DataFrame
