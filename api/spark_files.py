"""A Spark dataset's files: where they may be, their fingerprint, the frame a release reads.

The path of a dataset declared ``"engine": "spark"`` is a Parquet file or a directory of
them inside the data directory (confined as :func:`api.data_paths.resolve_data_path`
confines a file: no ``..``, no symlink out of it), or a URI under one of the roots the
operator allows (``RUIS_SPARK_DATA_ROOTS``, e.g. ``s3a://bucket/events/``). The files it
reads are the ``.parquet`` files under it, recursively, skipping names that start with
``_`` or ``.`` (Spark's ``_SUCCESS`` and checksum files), in a fixed order.

**Fingerprint** (at registration, :func:`examine`): the listing, each file's path, size
and modification time and, for files in the data directory, its SHA-256; the total row
count and the merged schema Spark reads from the footers; and ``sha256``, the SHA-256 of
the listing's canonical JSON, which names these contents in the ledger and the release
cache. A file in the data directory is thus identified by its content, as a Polars
dataset's file is (two datasets over the same file share a cap, whatever their engines);
a file under a URI by its path, size and time (hashing terabytes in object storage at
each registration is not done; the operator's storage must not rewrite a file in place
keeping its size and time).

**Before each release**, before any debit (:func:`observe`), the listing is taken again
and must equal the recorded one; the release then reads exactly the listed files
(:func:`frame`). The check reads names, sizes and times only, so neither its outcome nor
its duration depends on a data value.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from api import spark_session
from api.data_paths import resolve_data_entry
from api.problems import InvalidRequest
from db.ledger import canonical_json
from privacy import spark_engine
from privacy.errors import InvalidDataset
from privacy.files import sha256_of
from privacy.metadata import DatasetMetadata, check_schema

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("ruis.datasets")
_SUFFIX = ".parquet"


@dataclass(frozen=True)
class ListedFile:
    """One file of a Spark dataset: its data-directory path or its URI, size and time."""

    path: str
    size: int
    mtime_ns: int

    def document(self) -> dict[str, Any]:
        """The listing entry compared before each release (no content digest)."""
        return {"path": self.path, "size": self.size, "mtime_ns": self.mtime_ns}


def is_uri(path: str) -> bool:
    """Whether ``path`` names a URI (``scheme://...``) rather than a data-directory path."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").replace(".", "").isalnum()


_GLOB = frozenset("*?[]{}\\")
"""Characters Spark's reader expands as a glob (Hadoop's pattern syntax)."""


def _check_uri(path: str, roots: tuple[str, ...]) -> None:
    if any(c.isspace() or c == "\x00" for c in path) or "%2e" in path.lower():
        raise InvalidRequest("the URI must not hold whitespace, NUL or encoded dots")
    rest = path.partition("://")[2]
    if any(part in (".", "..") for part in rest.split("/")):
        raise InvalidRequest("the URI must not contain '.' or '..' components")
    if not any(path.startswith(root) or path + "/" == root for root in roots):
        allowed = ", ".join(roots) if roots else "none: RUIS_SPARK_DATA_ROOTS is not set"
        raise InvalidRequest(
            f"the URI is not under a data root the operator allows ({allowed}); "
            "use a path inside the data directory or ask for a root"
        )


def _hidden(relative: PurePosixPath) -> bool:
    return any(part.startswith(("_", ".")) for part in relative.parts)


def _local_listing(data_dir: Path, relative: str) -> list[ListedFile]:
    """The Parquet files under ``relative`` (a file or directory inside ``data_dir``)."""
    root = data_dir.resolve()
    target = resolve_data_entry(data_dir, relative)
    if target.is_file():
        size, mtime_ns = _stat(target)
        return [ListedFile(target.relative_to(root).as_posix(), size, mtime_ns)]
    found: list[ListedFile] = []
    for directory, names, files in os.walk(target):  # symlinked directories: not entered
        names[:] = sorted(n for n in names if not n.startswith(("_", ".")))
        for name in sorted(files):
            if name.startswith(("_", ".")) or not name.endswith(_SUFFIX):
                continue
            real = (Path(directory) / name).resolve()
            if not real.is_relative_to(root) or not real.is_file():
                raise InvalidRequest("a file under the path resolves outside the data directory")
            size, mtime_ns = _stat(real)
            relative_path = (Path(directory) / name).relative_to(root).as_posix()
            found.append(ListedFile(relative_path, size, mtime_ns))
    return found


def _stat(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def _uri_listing(spark: SparkSession, uri: str) -> list[ListedFile]:
    """The Parquet files under ``uri``, listed by Hadoop's file system (any scheme Spark
    reads: ``file:``, ``hdfs:``, ``s3a:``...)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    base = jvm.org.apache.hadoop.fs.Path(uri)
    fs = base.getFileSystem(conf)
    if not fs.exists(base):
        raise InvalidRequest("nothing is stored at the URI")
    qualified = str(fs.makeQualified(base).toString()).rstrip("/")
    found: list[ListedFile] = []
    files = fs.listFiles(base, True)
    while files.hasNext():
        status = files.next()
        name = str(status.getPath().toString())
        below = PurePosixPath(name[len(qualified) :].lstrip("/")) if name != qualified else None
        if below is not None and (_hidden(below) or not name.endswith(_SUFFIX)):
            continue
        if below is None and not name.endswith(_SUFFIX):
            continue
        # in the form the dataset declares (Hadoop writes file:///x as file:/x)
        listed = uri if below is None else f"{uri.rstrip('/')}/{below.as_posix()}"
        size, mtime_ns = int(status.getLen()), int(status.getModificationTime()) * 1_000_000
        found.append(ListedFile(listed, size, mtime_ns))
    return sorted(found, key=lambda f: f.path)


def _check_no_glob(path: str, what: str) -> None:
    if any(c in _GLOB for c in path):
        raise InvalidRequest(
            f"{what} must not hold the characters * ? [ ] {{ }} or \\: Spark would read "
            "them as a pattern matching other files"
        )


def locate(data_dir: Path, metadata: DatasetMetadata) -> None:
    """Refuse (422) a path Spark may not read: a URI not under an allowed root, a
    data-directory path that escapes it or names nothing, or a glob pattern."""
    _check_no_glob(metadata.path, "the path")
    if is_uri(metadata.path):
        _check_uri(metadata.path, spark_session.current_config().roots)
    else:
        resolve_data_entry(data_dir, metadata.path)


def listing(data_dir: Path, metadata: DatasetMetadata) -> list[ListedFile]:
    """The dataset's Parquet files now (InvalidRequest if the path is gone or refused;
    a URI needs the Spark session, :class:`api.problems.EngineUnavailable` without it)."""
    locate(data_dir, metadata)
    if is_uri(metadata.path):
        return _uri_listing(spark_session.session(), metadata.path)
    return _local_listing(data_dir, metadata.path)


def uris(data_dir: Path, files: list[dict[str, Any]]) -> list[str]:
    """What Spark reads for the listing ``files``: their URIs (``file:`` in the data dir)."""
    root = data_dir.resolve()
    return [f["path"] if is_uri(f["path"]) else (root / f["path"]).as_uri() for f in files]


def frame(data_dir: Path, files: list[dict[str, Any]]) -> DataFrame:
    """The Spark frame over exactly the listed ``files`` (no other file under the path)."""
    return spark_session.session().read.parquet(*uris(data_dir, files))


def examine(data_dir: Path, metadata: DatasetMetadata) -> dict[str, Any]:
    """The full registration check of a Spark dataset's files; its fingerprint, or a 422.

    The listing must hold a Parquet file; Spark reads every footer (schemas merged: files
    that disagree are refused) for the row count (at most ``max_rows``) and the schema
    (the declared columns with compatible types). Messages name the path and columns,
    never a value."""
    found = listing(data_dir, metadata)
    if not found:
        raise InvalidRequest(f"no Parquet file under {metadata.path!r}")
    for file in found:
        _check_no_glob(file.path, f"the file name {file.path!r}")
    documents = [file.document() for file in found]
    for document in documents:  # files in the data directory: identified by content
        if not is_uri(document["path"]):
            document["sha256"] = sha256_of(data_dir.resolve() / document["path"])
    spark = spark_session.session()
    try:
        read = spark.read.option("mergeSchema", "true").parquet(*uris(data_dir, documents))
        schema = spark_engine.frame_schema(read)
        rows = int(read.count())
    except Exception as exc:  # Spark raises many kinds on unreadable files; never quote them
        log.warning("cannot read the Parquet footers of %r", metadata.name, exc_info=exc)
        raise InvalidRequest(
            f"cannot read the Parquet footers under {metadata.path!r} (or their schemas differ)"
        ) from None
    try:
        check_schema(schema, metadata)
    except InvalidDataset as exc:
        raise InvalidRequest(exc.detail) from None
    if metadata.max_rows is not None and rows > metadata.max_rows:
        raise InvalidRequest(
            f"the files hold more rows than the declared max_rows ({metadata.max_rows})"
        )
    if [f.document() for f in listing(data_dir, metadata)] != [
        {k: d[k] for k in ("path", "size", "mtime_ns")} for d in documents
    ]:
        raise InvalidRequest("the data files changed while they were checked; try again")
    return {
        "engine": "spark",
        "path": metadata.path,
        "files": documents,
        "size": sum(f.size for f in found),
        "rows": rows,
        "schema": {name: str(dtype) for name, dtype in schema.items()},
        "sha256": hashlib.sha256(canonical_json(documents).encode()).hexdigest(),
        "source": None,
    }


def observe(
    data_dir: Path, fingerprint: dict[str, Any], metadata: DatasetMetadata
) -> tuple[str | None, dict[str, Any] | None]:
    """Why the files no longer match ``fingerprint`` (None if they do), and what was seen:
    the listing (paths, sizes, times) taken again, compared with the recorded one."""
    try:
        found = listing(data_dir, metadata)
    except InvalidRequest:
        return "file_missing", None
    recorded = [{k: f[k] for k in ("path", "size", "mtime_ns")} for f in fingerprint["files"]]
    now = [file.document() for file in found]
    if now == recorded:
        return None, None
    observed = {"files": len(now), "size": sum(f.size for f in found)}
    if {f["path"] for f in now} != {f["path"] for f in recorded}:
        return "files_changed", observed
    return "file_changed", observed
