"""A fresh worker process must survive its first queries arriving all at once.

polars registers its DataFrame-from-Series constructor with ``functools.singledispatch``
on first use; on Python 3.11 that registration racing another thread's dispatch raised
``RuntimeError: dictionary changed size during iteration`` — an occasional 500 on the
first concurrent queries of each ``ruis serve --workers N`` worker (seen in
``test_concurrency.py``). The service now registers it at import, before serving."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.reliability.support import REPO

PROBE = """
import sys

import pytest
from polars._utils.construction.dataframe import _sequence_to_pydf_dispatcher as dispatch
import polars as pl
if sys.argv[1] == "app":
    import api.asgi  # what each uvicorn worker imports before it serves
print(pl.Series in dispatch.registry)
"""


def _registered_after(import_: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, import_],
        cwd=REPO,
        timeout=120,
        capture_output=True,
        text=True,
        check=True,
        env={"RUIS_DATA_DIR": str(REPO / "nonexistent-data-dir")},
    )
    return result.stdout.strip() == "True"


@pytest.mark.slow  # fresh interpreters importing the app
def test_the_app_registers_polars_dispatch_before_serving() -> None:
    assert _registered_after("polars") is False  # lazily registered by polars itself
    assert _registered_after("app") is True
