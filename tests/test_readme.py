"""The README's user guide runs: every block marked ``<!-- readme-test -->`` is executed in
order against a real server — shell blocks with bash (``curl``, ``ruis admin``), Python
blocks with ``exec`` — with ``$RUIS_URL`` and the keys in the environment.

A marker may capture a field of the block's JSON output into an environment variable for
the blocks after it: ``<!-- readme-test capture=ANALYST_KEY:api_key -->``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import demo_data
from tests.conftest import ADMIN_KEY, Service

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(
    r"<!-- readme-test(?P<options>[^>]*?)\s*-->\n```(?P<lang>\w+)\n"
    r"(?P<code>.*?)\n```",
    re.DOTALL,
)
CAPTURE = re.compile(r"capture=(?P<var>[A-Z_]+):(?P<field>\w+)")

# the examples run as subprocesses (curl, ruis admin, python) against a URL
pytestmark = pytest.mark.live


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


@pytest.mark.slow  # runs every README example in subprocesses
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_readme_examples_run(
    server: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo_data.generate(server.settings.data_dir, devices=300, days=7)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("RUIS_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        RUIS_URL=server.url,
        RUIS_ADMIN_KEY=ADMIN_KEY,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    monkeypatch.chdir(tmp_path)
    for block in readme_blocks():
        where = f"README.md line {block.line}"
        if block.lang == "sh":
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
            output = done.stdout
        else:
            for key, value in env.items():
                monkeypatch.setenv(key, value)
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(block.code, where, "exec"), {"__name__": "__readme__"})
            output = printed.getvalue()
        for variable, field in block.captures.items():
            env[variable] = json.loads(output)[field]
    assert json.loads((tmp_path / "ledger.jsonl").read_text().splitlines()[-1])["kind"]
