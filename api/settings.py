"""Settings read from the environment."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from api.release_timing import DEFAULT_QUANTUM_MS

DEFAULT_DATA_DIR = "./data"
DEFAULT_LEDGER_ORIGIN = "ruis.local/ledger"
MAX_BODY_BYTES = 1_000_000
DEFAULT_SPARK_MASTER = "local[*]"
DEFAULT_MIN_FREE_MB = 64
"""/readyz fails when the data or SQLite directory has less free space than this."""


_CPUS = os.cpu_count() or 1


def _env_int(name: str, default: int, *, minimum: int = 1) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {text!r}")
    return value


def _env_amount(name: str, default: Decimal) -> Decimal:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {text!r}")
    return value


@dataclass(frozen=True)
class LimitSettings:
    """Deployment-wide quotas and limits (README, "Limits"); per-consumer overrides live in
    the database (``PUT /v1/consumers/{name}/limits``) and replace the first six."""

    min_epsilon: Decimal = Decimal("0.001")
    """Smallest ε one release may cost (pure budgets)."""
    min_rho: Decimal = Decimal("0.000001")
    """Smallest ρ one release may cost (zCDP budgets)."""
    max_cells: int = 100_000
    """Most key combinations (release rows) one query may ask for."""
    max_concurrent_per_consumer: int = max(2, math.ceil(_CPUS / 2))
    """Releases (and, separately, previews) one consumer may compute at once (at least 2:
    a request waiting for an identical query that hangs must not wait for its slot too)."""
    requests_per_minute: int = 6000
    """Sustained query requests per minute per consumer (token bucket refill)."""
    burst: int = 600
    """Token bucket size: requests a consumer may send at once after being idle."""
    max_concurrent_releases: int = _CPUS
    """Releases computed at once in this process, over all consumers."""
    max_concurrent_previews: int = max(1, math.ceil(_CPUS / 2))
    """Previews computed at once in this process, over all consumers."""
    heavy_cells: int = 10_000
    """Queries with more cells than this are *heavy*: they compute in their own, smaller
    lanes, so that they never hold the slots small queries need."""
    max_concurrent_heavy_releases: int = max(1, _CPUS // 2)
    """Heavy releases computed at once in this process (within ``max_concurrent_releases``
    there is always room for small ones)."""
    max_concurrent_heavy_previews: int = 1
    """Heavy previews (compiling a large plan) at once in this process."""
    queue_timeout_seconds: float = 30.0
    """How long a request waits for a free slot before a 429."""
    max_queued_per_consumer: int = 200
    """Requests of one consumer that may wait for a slot at once (more: 429 at once)."""
    plan_cache_bytes: int = 256 * 2**20
    """Estimated bytes of compiled plans kept in the plan cache."""
    ledger_page_bytes: int = 4 * 2**20
    """Encoded bytes of entries in one ``GET /v1/ledger`` page (at least one entry)."""

    @classmethod
    def from_env(cls) -> LimitSettings:
        """Each field from ``RUIS_<FIELD NAME IN CAPITALS>`` (e.g. ``RUIS_MAX_CELLS``), else
        its default; a malformed or non-positive value is an error at start."""
        d = cls()
        return cls(
            min_epsilon=_env_amount("RUIS_MIN_EPSILON", d.min_epsilon),
            min_rho=_env_amount("RUIS_MIN_RHO", d.min_rho),
            max_cells=_env_int("RUIS_MAX_CELLS", d.max_cells),
            max_concurrent_per_consumer=_env_int(
                "RUIS_MAX_CONCURRENT_PER_CONSUMER", d.max_concurrent_per_consumer
            ),
            requests_per_minute=_env_int("RUIS_REQUESTS_PER_MINUTE", d.requests_per_minute),
            burst=_env_int("RUIS_BURST", d.burst),
            max_concurrent_releases=_env_int(
                "RUIS_MAX_CONCURRENT_RELEASES", d.max_concurrent_releases
            ),
            max_concurrent_previews=_env_int(
                "RUIS_MAX_CONCURRENT_PREVIEWS", d.max_concurrent_previews
            ),
            heavy_cells=_env_int("RUIS_HEAVY_CELLS", d.heavy_cells),
            max_concurrent_heavy_releases=_env_int(
                "RUIS_MAX_CONCURRENT_HEAVY_RELEASES", d.max_concurrent_heavy_releases
            ),
            max_concurrent_heavy_previews=_env_int(
                "RUIS_MAX_CONCURRENT_HEAVY_PREVIEWS", d.max_concurrent_heavy_previews
            ),
            queue_timeout_seconds=_env_float("RUIS_QUEUE_TIMEOUT_SECONDS", d.queue_timeout_seconds),
            max_queued_per_consumer=_env_int(
                "RUIS_MAX_QUEUED_PER_CONSUMER", d.max_queued_per_consumer
            ),
            plan_cache_bytes=_env_int("RUIS_PLAN_CACHE_BYTES", d.plan_cache_bytes),
            ledger_page_bytes=_env_int("RUIS_LEDGER_PAGE_BYTES", d.ledger_page_bytes, minimum=1024),
        )


@dataclass(frozen=True)
class Settings:
    """Where the ledger lives, where the data files live, and the bootstrap admin key."""

    database_url: str
    data_dir: Path
    bootstrap_admin_key: str | None = None
    max_body_bytes: int = MAX_BODY_BYTES
    metrics_token: str | None = field(default=None, repr=False)
    limits: LimitSettings = field(default_factory=LimitSettings)
    min_free_bytes: int = DEFAULT_MIN_FREE_MB * 2**20
    release_time_quantum_ms: int = DEFAULT_QUANTUM_MS
    ledger_key_file: Path | None = None
    """The ledger's Ed25519 signing key (PEM); None: ``ledger-key.pem`` in the data directory."""
    ledger_origin: str = DEFAULT_LEDGER_ORIGIN
    """The checkpoints' origin line and the signing key's name."""
    spark_master: str = DEFAULT_SPARK_MASTER
    """The Spark master datasets with ``"engine": "spark"`` run on (started at first use)."""
    spark_data_roots: tuple[str, ...] = ()
    """URI prefixes (each ending in ``/``) a Spark dataset's path may be under, besides
    paths inside the data directory; none: only the data directory."""

    @property
    def ledger_key_path(self) -> Path:
        """Where the ledger's signing key is read from (or made at first start)."""
        return self.ledger_key_file or self.data_dir / "ledger-key.pem"

    @classmethod
    def from_env(cls) -> Settings:
        """``RUIS_DATABASE_URL`` (default: SQLite file ``ruis.db`` in the data directory),
        ``RUIS_DATA_DIR`` (default ``./data``), ``RUIS_BOOTSTRAP_ADMIN_KEY`` (optional),
        ``RUIS_METRICS_TOKEN`` (optional: when set, ``/metrics`` needs it as a bearer token),
        ``RUIS_MIN_FREE_MB`` (free space /readyz requires, default 64),
        ``RUIS_RELEASE_TIME_QUANTUM_MS`` (releases answer at multiples of it; 0 turns it off),
        ``RUIS_LEDGER_KEY_FILE`` (the ledger's signing key, made at first start; default
        ``ledger-key.pem`` in the data directory), ``RUIS_LEDGER_ORIGIN`` (the checkpoints'
        origin, default ``ruis.local/ledger``) and the limits (:meth:`LimitSettings.from_env`).
        ValueError for an origin with spaces or ``+``."""
        data_dir = Path(os.environ.get("RUIS_DATA_DIR", DEFAULT_DATA_DIR)).resolve()
        url = os.environ.get("RUIS_DATABASE_URL") or f"sqlite:///{data_dir / 'ruis.db'}"
        key = os.environ.get("RUIS_BOOTSTRAP_ADMIN_KEY") or None
        metrics_token = os.environ.get("RUIS_METRICS_TOKEN") or None
        min_free_mb = int(os.environ.get("RUIS_MIN_FREE_MB") or DEFAULT_MIN_FREE_MB)
        quantum = int(os.environ.get("RUIS_RELEASE_TIME_QUANTUM_MS") or DEFAULT_QUANTUM_MS)
        key_file = os.environ.get("RUIS_LEDGER_KEY_FILE") or None
        origin = os.environ.get("RUIS_LEDGER_ORIGIN") or DEFAULT_LEDGER_ORIGIN
        if not origin or any(c.isspace() or c == "+" for c in origin) or len(origin) > 128:
            raise ValueError(
                "RUIS_LEDGER_ORIGIN must be non-empty, at most 128 characters, "
                "without spaces or '+' (e.g. stats.example/ruis)"
            )
        return cls(
            database_url=url,
            data_dir=data_dir,
            bootstrap_admin_key=key,
            metrics_token=metrics_token,
            min_free_bytes=min_free_mb * 2**20,
            release_time_quantum_ms=quantum,
            limits=LimitSettings.from_env(),
            ledger_key_file=Path(key_file).resolve() if key_file else None,
            ledger_origin=origin,
            spark_master=os.environ.get("RUIS_SPARK_MASTER") or DEFAULT_SPARK_MASTER,
            spark_data_roots=spark_roots(os.environ.get("RUIS_SPARK_DATA_ROOTS") or ""),
        )


def spark_roots(text: str) -> tuple[str, ...]:
    """The URI prefixes of ``RUIS_SPARK_DATA_ROOTS`` (comma-separated), each with a scheme
    (``s3a://bucket/events/``, ``hdfs://nn/data/``, ``file:///srv/data/``) and ending in
    ``/`` (added if missing, so a root never admits a sibling that only shares its prefix).
    ValueError for an entry without a scheme, with ``..`` or whitespace."""
    roots: list[str] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        scheme, sep, rest = entry.partition("://")
        if (
            not sep
            or not scheme.isascii()
            or not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()
            or not rest
            or ".." in rest.split("/")
            or any(c.isspace() for c in entry)
        ):
            raise ValueError(
                f"RUIS_SPARK_DATA_ROOTS: {entry!r} is not a URI prefix such as "
                "s3a://bucket/events/ or file:///srv/data/"
            )
        roots.append(entry if entry.endswith("/") else entry + "/")
    return tuple(roots)
