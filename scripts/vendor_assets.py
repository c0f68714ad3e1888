"""Vendor the console's and the docs' front-end files from the npm registry.

Each package is pinned (name, version) with the files it keeps. The tarball is fetched
with httpx from registry.npmjs.org, checked against the registry's ``integrity``
(Subresource-Integrity form, sha512), and only the kept files plus the package's licence
are written under the destination; a ``manifest.json`` there records package, version,
tarball URL, integrity, licence and the sha256 of every file kept. Run it to change a
pin; the files are committed, so the server never needs npm or the network.

    python scripts/vendor_assets.py          # api/static/vendor/ and tests/ui/vendor/
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx

REGISTRY = "https://registry.npmjs.org"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Patch:
    """One exact text replacement in a kept file, with the reason (recorded in the
    manifest beside the upstream file's sha256)."""

    file: str
    old: str
    new: str
    why: str


@dataclass(frozen=True)
class Pin:
    """One npm package at one version, with the files (paths in the tarball) it keeps."""

    name: str
    version: str
    files: tuple[str, ...]
    licence_files: tuple[str, ...]
    patches: tuple[Patch, ...] = ()


CONSOLE = ROOT / "api" / "static" / "vendor"
TEST_ONLY = ROOT / "tests" / "ui" / "vendor"

PINS: dict[Path, tuple[Pin, ...]] = {
    CONSOLE: (
        Pin("htmx.org", "2.0.11", ("dist/htmx.min.js",), ("LICENSE",)),
        Pin("chart.js", "4.5.1", ("dist/chart.umd.min.js",), ("LICENSE.md",)),
        Pin("chartjs-chart-error-bars", "4.4.5", ("build/index.umd.min.js",), ("LICENSE",)),
        Pin("@picocss/pico", "2.1.1", ("css/pico.min.css",), ("LICENSE.md",)),
        Pin(
            "swagger-ui-dist",
            "5.35.0",
            ("swagger-ui-bundle.js", "swagger-ui.css"),
            ("LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"),
        ),
        Pin(
            "redoc",
            "2.5.4",
            ("bundles/redoc.standalone.js",),
            ("LICENSE", "bundles/redoc.standalone.js.LICENSE.txt"),
            (
                Patch(
                    "bundles/redoc.standalone.js",
                    "https://cdn.redoc.ly/redoc/logo-mini.svg",
                    "data:image/svg+xml,%3Csvg xmlns=%27http://www.w3.org/2000/svg%27/%3E",
                    "ReDoc's sidebar loads its logo from cdn.redoc.ly (no option turns it "
                    "off); an empty inline image keeps /redoc from reaching outside",
                ),
            ),
        ),
    ),
    TEST_ONLY: (Pin("axe-core", "4.11.0", ("axe.min.js",), ("LICENSE", "LICENSE-3RD-PARTY.txt")),),
}


def _registry_entry(client: httpx.Client, pin: Pin) -> tuple[str, str, str]:
    """The tarball URL, integrity and licence the registry publishes for ``pin``."""
    response = client.get(f"{REGISTRY}/{pin.name.replace('/', '%2f')}/{pin.version}")
    response.raise_for_status()
    document = response.json()
    dist = document["dist"]
    return dist["tarball"], dist["integrity"], str(document.get("license", ""))


def _check_integrity(data: bytes, integrity: str) -> None:
    """Raise when ``data`` does not match the SRI string ``integrity`` (sha512)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise ValueError(f"integrity mismatch: {actual} != {expected}")


def vendor(client: httpx.Client, pin: Pin, destination: Path) -> dict[str, object]:
    """Fetch, check and extract ``pin`` into ``destination/<name>/``; its manifest entry."""
    tarball, integrity, licence = _registry_entry(client, pin)
    response = client.get(tarball)
    response.raise_for_status()
    _check_integrity(response.content, integrity)
    target = destination / pin.name
    if target.exists():
        shutil.rmtree(target)
    hashes: dict[str, str] = {}
    upstream: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
        for path in (*pin.files, *pin.licence_files):
            member = archive.extractfile(f"package/{path}")
            if member is None:
                raise ValueError(f"{pin.name}@{pin.version} has no file {path}")
            data = member.read()
            for patch in (p for p in pin.patches if p.file == path):
                if data.count(patch.old.encode()) != 1:
                    raise ValueError(f"{pin.name}: patch target not found once in {path}")
                upstream[Path(path).name] = hashlib.sha256(data).hexdigest()
                data = data.replace(patch.old.encode(), patch.new.encode())
            out = target / Path(path).name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            hashes[out.relative_to(destination).as_posix()] = hashlib.sha256(data).hexdigest()
    return {
        "package": pin.name,
        "version": pin.version,
        "tarball": tarball,
        "integrity": integrity,
        "license": licence,
        "license_files": [f"{pin.name}/{Path(p).name}" for p in pin.licence_files],
        "files": hashes,
        "patches": [
            {
                "file": f"{pin.name}/{Path(p.file).name}",
                "upstream_sha256": upstream[Path(p.file).name],
                "replaced": p.old,
                "with": p.new,
                "why": p.why,
            }
            for p in pin.patches
        ],
    }


def main() -> int:
    """Vendor every pinned package and write each destination's manifest."""
    with httpx.Client(timeout=120, follow_redirects=True) as client:
        for destination, pins in PINS.items():
            destination.mkdir(parents=True, exist_ok=True)
            entries = [vendor(client, pin, destination) for pin in pins]
            manifest = {"registry": REGISTRY, "packages": entries}
            (destination / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            print(f"{destination.relative_to(ROOT)}: {', '.join(p.name for p in pins)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
