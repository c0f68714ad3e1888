"""``require_tool``: a test needing a missing tool skips on a developer's machine and fails
where it is required (CI)."""

from __future__ import annotations

import pytest

from tests.conftest import require_tool


def test_an_available_tool_neither_skips_nor_fails() -> None:
    require_tool(True, "chromium", required=True)
    require_tool(True, "chromium", required=False)


def test_a_missing_tool_skips_locally() -> None:
    with pytest.raises(pytest.skip.Exception, match="chromium is not available"):
        require_tool(False, "chromium", required=False)


def test_a_missing_tool_fails_in_ci() -> None:
    with pytest.raises(pytest.fail.Exception, match="chromium is required here"):
        require_tool(False, "chromium", required=True)
