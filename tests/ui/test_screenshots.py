"""Every console page has a committed screenshot, linked from the README (the browser
tests take them: ``RUIS_SCREENSHOT_DIR=docs/screenshots pytest tests/ui``)."""

from __future__ import annotations

import re

from tests.ui.browser import REPO, SCREENSHOTS, SHOTS


def test_every_page_has_a_screenshot_linked_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\(docs/screenshots/([\w-]+)\.png\)", readme))
    assert linked == set(SHOTS)
    for name in SHOTS:
        path = SCREENSHOTS / f"{name}.png"
        assert path.exists(), f"{path} is missing"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
