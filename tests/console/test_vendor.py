"""The vendored front-end files are exactly what the manifests say (as fetched from the npm
registry by scripts/vendor_assets.py), each package with its licence, and the wheel ships
the templates and static files."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDOR_DIRS = (ROOT / "api" / "static" / "vendor", ROOT / "tests" / "ui" / "vendor")
EXPECTED = {
    VENDOR_DIRS[0]: {
        "htmx.org",
        "chart.js",
        "chartjs-chart-error-bars",
        "@picocss/pico",
        "swagger-ui-dist",
        "redoc",
    },
    VENDOR_DIRS[1]: {"axe-core"},
}


def _manifest(directory: Path) -> dict[str, object]:
    manifest: dict[str, object] = json.loads((directory / "manifest.json").read_text())
    return manifest


@pytest.mark.parametrize("directory", VENDOR_DIRS, ids=["console", "tests"])
def test_files_match_the_manifest(directory: Path) -> None:
    manifest = _manifest(directory)
    packages = manifest["packages"]
    assert isinstance(packages, list)
    assert {p["package"] for p in packages} == EXPECTED[directory]
    listed: set[str] = set()
    for package in packages:
        assert package["tarball"].startswith("https://registry.npmjs.org/")
        assert package["tarball"].endswith(f"-{package['version']}.tgz")
        assert package["integrity"].startswith("sha512-")
        assert package["license"]
        for path, digest in package["files"].items():
            assert path.startswith(package["package"] + "/")
            data = (directory / path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == digest, path
            listed.add(path)
        assert package["license_files"]
        for licence in package["license_files"]:
            assert licence in package["files"]
            assert (directory / licence).stat().st_size > 100 or licence.endswith("NOTICE")
        for patch in package["patches"]:
            text = (directory / patch["file"]).read_text()
            assert patch["replaced"] not in text and patch["with"] in text and patch["why"]
    on_disk = {
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert on_disk == listed  # nothing unlisted, nothing missing


def test_versions_are_the_pinned_majors() -> None:
    versions = {p["package"]: p["version"] for p in _manifest(VENDOR_DIRS[0])["packages"]}  # type: ignore[attr-defined]
    assert versions["htmx.org"].startswith("2.")
    assert versions["chart.js"].startswith("4.")


def test_the_wheel_ships_templates_and_static_files() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "api.console" in config["packages"]
    patterns = config["package-data"]["api"]
    api = ROOT / "api"
    shipped = {p for pattern in patterns for p in api.glob(pattern) if p.is_file()}
    wanted = {
        p for folder in ("templates", "static") for p in (api / folder).rglob("*") if p.is_file()
    }
    assert wanted and wanted <= shipped
