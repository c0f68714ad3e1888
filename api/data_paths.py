"""Data files: confine a declared path to the data directory."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from api.problems import InvalidRequest


def _confine(data_dir: Path, relative: str, what: str) -> Path:
    """The real location ``relative`` names inside ``data_dir`` (existing), or InvalidRequest."""
    if "\x00" in relative or "\\" in relative:
        raise InvalidRequest("path must be a plain relative path inside the data directory")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or relative.startswith("~"):
        raise InvalidRequest("path must be relative to the data directory")
    if any(part in ("..", "") for part in relative.split("/")) or ".." in pure.parts:
        raise InvalidRequest("path must not contain '..' or empty components")
    root = data_dir.resolve()
    try:
        real = (root / pure).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, name too long, symlink loop (RuntimeError)
        raise InvalidRequest(f"no {what} at {relative!r} in the data directory") from None
    if not real.is_relative_to(root):
        raise InvalidRequest("path resolves outside the data directory")
    return real


def resolve_data_path(data_dir: Path, relative: str) -> Path:
    """The file ``relative`` names inside ``data_dir``, or InvalidRequest.

    Refuses absolute paths, ``..`` components, NUL bytes, backslashes, and any
    path whose real location (after following symlinks) is outside the data
    directory; the target must be an existing regular file.
    """
    real = _confine(data_dir, relative, "data file")
    try:
        is_file = real.is_file()
    except OSError:
        is_file = False
    if not is_file:
        raise InvalidRequest(f"no data file at {relative!r} in the data directory")
    return real


def resolve_data_entry(data_dir: Path, relative: str) -> Path:
    """The file or directory ``relative`` names inside ``data_dir``, or InvalidRequest (the
    same refusals as :func:`resolve_data_path`; a trailing ``/`` is allowed)."""
    what = "data file or directory"
    real = _confine(data_dir, relative.rstrip("/") or relative, what)
    try:
        usable = real.is_file() or real.is_dir()
    except OSError:
        usable = False
    if not usable:
        raise InvalidRequest(f"no {what} at {relative!r} in the data directory")
    return real
