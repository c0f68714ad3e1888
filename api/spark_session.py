"""The one Spark session of this process, for the datasets declared ``"engine": "spark"``.

Started at first use (a dataset's registration or a release), on the master the
deployment names (``RUIS_SPARK_MASTER``, default ``local[*]``), and kept for the life of
the process: starting Spark takes seconds, a release must not pay that each time. At
start the executors' Polars version is checked against the driver's: the Spark engine's
truncation runs Polars' own tie-break hash on the executors (:mod:`privacy.spark_engine`),
and that hash is stable only within one Polars version.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from api.problems import EngineUnavailable
from privacy import spark_engine

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger("ruis.spark")


@dataclass(frozen=True)
class SparkConfig:
    """Where Spark runs and which URIs its datasets may read."""

    master: str = "local[*]"
    roots: tuple[str, ...] = ()


_lock = threading.Lock()
_config = SparkConfig()
_session: SparkSession | None = None
_session_master: str | None = None


def configure(config: SparkConfig) -> None:
    """Use ``config`` from now on (the application does this at start from its settings)."""
    global _config
    with _lock:
        _config = config


def current_config() -> SparkConfig:
    """The configuration :func:`session` starts Spark with."""
    return _config


def _start(master: str) -> SparkSession:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise EngineUnavailable(
            "this deployment has no Spark engine: install Ruis with its 'spark' extra "
            "(pip install 'ruis[spark]') and a Java runtime. Nothing was charged."
        ) from None
    no_java = shutil.which("java") is None and "JAVA_HOME" not in os.environ
    if master.startswith("local") and no_java:
        raise EngineUnavailable(
            "the Spark engine needs a Java runtime (java on PATH or JAVA_HOME), which this "
            "machine lacks. Nothing was charged."
        )
    # local executors run this interpreter (which has pyarrow and Polars)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        builder = (
            SparkSession.builder.master(master)
            .appName("ruis")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.session.timeZone", "UTC")  # dates and times as Polars reads them
        )
        if master.startswith("local"):  # one machine: no web UI, shuffles sized to its cores
            builder = builder.config("spark.ui.enabled", "false").config(
                "spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 1))
            )
        spark = builder.getOrCreate()
        found = spark_engine.executor_polars_versions(spark)
    except Exception as exc:  # Py4J and Spark raise many kinds; log, never send them
        log.error("cannot start Spark on %r", master, exc_info=exc)
        raise EngineUnavailable(
            "the Spark engine could not be started or reached; an operator must check "
            "RUIS_SPARK_MASTER. Nothing was charged."
        ) from None
    if found != {spark_engine.polars_version()}:
        spark.stop()
        raise EngineUnavailable(
            f"Spark's executors run Polars {', '.join(sorted(found))}, the service "
            f"{spark_engine.polars_version()}: they must be the same (the truncation's "
            "tie-break hash is stable only within one version). Nothing was charged."
        )
    log.info("Spark started on %r", master)
    return spark


def session() -> SparkSession:
    """The process's Spark session on the configured master, started if need be.

    Raises :class:`EngineUnavailable` (503, nothing charged) when PySpark or Java is
    missing, the master cannot be reached, or the executors' Polars differs."""
    global _session, _session_master
    with _lock:
        master = _config.master
        alive = _session is not None and getattr(_session.sparkContext, "_jsc", None) is not None
        if _session is not None and alive and _session_master == master:
            return _session
        if _session is not None and alive:
            _session.stop()
            _session = None
        _session = _start(master)
        _session_master = master
        return _session
