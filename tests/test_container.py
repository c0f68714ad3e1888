"""The container image, built and run for real with Debian's podman (runc, cgroupfs): a base
image from ``debootstrap --variant=minbase --include=python3,python3-venv bookworm`` and
``podman import``, the Dockerfile built on it (``--build-arg BASE_IMAGE``), ``ruis demo``
run in it with ``--network host``, ``/healthz`` answered, and a demo query from inside.

podman keeps everything in a private storage (a temporary graph root and run root) with a
containers.conf written here, so nothing of the machine's own podman setup is used or left
behind. The debootstrap tree is cached as a tarball for the day under
``$XDG_CACHE_HOME/ruis-tests`` (``~/.cache``). Slow: 2.5–3 minutes with that cache, 5.5
without (debootstrap and pip downloading the wheels in the build, 2 each); skipped
without podman or debootstrap, failing in CI
(``CI=true``), where ``scripts/system-deps.sh`` installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, require_tool

ROOT = Path(__file__).resolve().parents[1]
SBIN = os.pathsep.join((os.environ.get("PATH", ""), "/usr/sbin", "/sbin"))
PODMAN = shutil.which("podman", path=SBIN)
DEBOOTSTRAP = shutil.which("debootstrap", path=SBIN)
RUNC = shutil.which("runc", path=SBIN)
SUITE = "bookworm"
BASE_TAG = f"localhost/ruis-base:{SUITE}-minbase"

pytestmark = [pytest.mark.slow, pytest.mark.heavy, pytest.mark.timeout(1500)]


def _run(*argv: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "ruis-tests"
    path.mkdir(parents=True, exist_ok=True)
    return path


def base_tarball() -> Path:
    """A tarball of a Debian minbase with python3 and its venv module: today's from the
    cache, or debootstrapped now (about 90 s)."""
    today = datetime.now(UTC).date().isoformat()
    tarball = _cache_dir() / f"{SUITE}-minbase-python3-{today}.tar"
    if tarball.exists():
        return tarball
    assert DEBOOTSTRAP is not None
    for old in _cache_dir().glob(f"{SUITE}-minbase-python3-*.tar"):
        old.unlink()  # a day old: security updates
    work = _cache_dir() / f"debootstrap-{uuid.uuid4().hex[:8]}"
    try:
        _run(
            DEBOOTSTRAP,
            "--variant=minbase",
            "--include=python3,python3-venv",
            SUITE,
            str(work),
            "http://deb.debian.org/debian",
        )
        partial = tarball.with_suffix(".partial")
        _run("tar", "-C", str(work), "-cf", str(partial), ".")
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


@dataclass(frozen=True)
class Podman:
    """podman with its own configuration and storage."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 900) -> str:
        assert PODMAN is not None
        return _run(PODMAN, *args, env=self.env, timeout=timeout)


def _storage_conf(path: Path, driver: str, root: Path) -> None:
    path.write_text(
        "[storage]\n"
        f'driver = "{driver}"\n'
        f'graphroot = "{root / "graph"}"\n'
        f'runroot = "{root / "run"}"\n'
    )


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    """podman configured as Debian's runs here: runc, cgroupfs, no default ulimits, events
    in a file; overlay storage, or vfs where overlay does not work."""
    require_tool(PODMAN is not None, "podman")
    require_tool(RUNC is not None, "runc")
    require_tool(DEBOOTSTRAP is not None, "debootstrap")
    assert PODMAN is not None
    binary = PODMAN
    root = tmp_path / "podman"
    root.mkdir()
    conf = root / "containers.conf"
    conf.write_text(
        "[containers]\n"
        "default_ulimits = []\n"
        "[engine]\n"
        'runtime = "runc"\n'
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{root / "events.log"}"\n'
    )
    storage = root / "storage.conf"
    env = {**os.environ, "CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}
    tool = Podman(env)
    for driver in ("overlay", "vfs"):
        _storage_conf(storage, driver, root)
        try:
            tool("info", "--format", "{{.Store.GraphDriverName}}", timeout=60)
            break
        except AssertionError:
            shutil.rmtree(root / "graph", ignore_errors=True)
    else:
        pytest.fail("podman works with neither overlay nor vfs storage")
    try:
        yield tool
    finally:
        subprocess.run([binary, "rm", "--all", "--force"], env=env, capture_output=True)
        subprocess.run([binary, "rmi", "--all", "--force"], env=env, capture_output=True)


def _build_volumes() -> list[str]:
    """The host's CA bundle for pip in the build, when the host names one (a TLS-inspecting
    proxy); a bind mount during RUN steps only, nothing of it lands in the image."""
    for variable in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):  # what pip trusts
        cert = os.environ.get(variable)
        if cert and Path(cert).is_file():
            return ["--volume", f"{cert}:/etc/ssl/certs/ca-certificates.crt:ro"]
    return []


QUERY = """
import json, sys, urllib.request
key = json.load(open("/data/demo-keys.json"))["cbs-mobility"]
body = {"dataset": "mobility_events", "statistic": "unit_count",
        "group_by": ["municipality"], "privacy": {"epsilon": 0.5}}
request = urllib.request.Request(
    f"http://127.0.0.1:{sys.argv[1]}/v1/queries", data=json.dumps(body).encode(),
    headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=120) as answer:
    print(json.dumps({"status": answer.status, "release": json.load(answer)}))
"""


def test_image_builds_on_minbase_and_serves_the_demo(podman: Podman, tmp_path: Path) -> None:
    started = time.monotonic()
    tarball = base_tarball()
    podman("import", str(tarball), BASE_TAG)
    tag = f"localhost/ruis-test:{uuid.uuid4().hex[:8]}"
    podman(
        "build",
        "--network",
        "host",
        "--format",
        "docker",  # keeps the HEALTHCHECK
        *_build_volumes(),
        "--build-arg",
        f"BASE_IMAGE={BASE_TAG}",
        "--tag",
        tag,
        str(ROOT),
    )
    built = time.monotonic()
    image = json.loads(podman("image", "inspect", tag))[0]
    health = image.get("Healthcheck") or image["Config"].get("Healthcheck")
    assert health and "/healthz" in " ".join(health["Test"])

    data = tmp_path / "data"
    data.mkdir()
    user: list[str] = []
    if os.geteuid() == 0:
        os.chown(data, 10001, 10001)  # the image's user
    else:
        user = ["--user", "0:0"]  # rootless: the container's root is this user
    port = free_port()
    name = f"ruis-test-{uuid.uuid4().hex[:8]}"
    podman(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        *user,
        "--volume",
        f"{data}:/data",
        tag,
        *("demo", "--host", "127.0.0.1", "--port", str(port), "--data-dir", "/data"),
        *("--devices", "2000", "--days", "7"),
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            state = podman("inspect", "--format", "{{.State.Status}}", name).strip()
            assert state == "running", podman("logs", name)
            assert time.monotonic() < deadline, podman("logs", name)
            time.sleep(1)
        served = time.monotonic()
        answer = json.loads(podman("exec", name, "python3", "-c", QUERY, str(port)))
        assert answer["status"] == 200
        release = answer["release"]
        assert release["columns"] == ["municipality", "value"]
        assert len(release["rows"]) > 1
        assert release["cost"]["epsilon"] == 0.5
        assert "Ruis demo" in podman("logs", name)
        print(
            f"base+build {built - started:.0f} s, up {served - built:.0f} s,"
            f" query {time.monotonic() - served:.1f} s"
        )
    finally:
        podman("rm", "--force", name)
        podman("rmi", "--force", tag, BASE_TAG)
