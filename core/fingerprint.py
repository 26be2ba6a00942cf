"""Content fingerprints of files: what says that an input, a checkpoint or a result is unchanged.

Size and mtime alone are not enough (``cp -p`` of another patient keeps both), so every
fingerprint carries the SHA-256 of the content. Hashing is skipped only when the file's
full stat identity (inode, size, mtime and ctime, in ns) equals the one stored beside an
earlier hash: ctime cannot be set back by ``touch`` or a copy, so a match means the
content was not written since.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumorscope.core.errors import CaseFileMissingError, TumorscopeError

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:12]
    'ba7816bf8f01'
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        raise CaseFileMissingError("file does not exist", path=path) from None
    except PermissionError:
        raise TumorscopeError("permission denied: the file cannot be read", path=path) from None
    except IsADirectoryError:
        raise TumorscopeError("is a folder, expected a file", path=path) from None
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def fingerprint(path: str | Path, previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns", "stat", "sha256"}`` of a file.

    ``previous`` is an earlier fingerprint of the same path: its hash is reused when the
    stat identity is unchanged, so a cohort is hashed once, not on every run.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CaseFileMissingError("file does not exist", path=path) from None
    resolved = str(path.resolve())
    key = _stat_key(st)
    if (previous and previous.get("path") == resolved and previous.get("stat") == key
            and previous.get("sha256")):
        sha = str(previous["sha256"])
    else:
        sha = sha256_file(path)
    return {"path": resolved, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "stat": key,
            "sha256": sha}


def same_content(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """Whether two fingerprints name the same file with the same bytes."""
    return bool(a and b and a.get("path") == b.get("path") and a.get("sha256")
                and a.get("sha256") == b.get("sha256"))


_MEMO: dict[tuple[str, tuple[int, ...]], str] = {}
"""Hashes computed by this process, by (path, stat identity): a reader asking again is free."""


def content_unchanged(fp: Mapping[str, Any] | None, path: str | Path | None = None) -> bool:
    """Whether the file ``fp`` describes still holds the same bytes.

    ``path`` is where the file is now, when its folder may have moved since (a run copied
    elsewhere). One ``stat`` when its identity (inode, size, mtime, ctime) is the recorded
    one; otherwise the content is hashed (once per identity in this process) and compared,
    so a copy with the same bytes is current and ``cp -p`` of other bytes is not.
    """
    where = path if path is not None else (fp or {}).get("path")
    if not fp or not where or not fp.get("sha256"):
        return False
    try:
        st = os.stat(where)
    except OSError:
        return False
    key = _stat_key(st)
    if key == fp.get("stat"):
        return True
    if st.st_size != fp.get("size"):
        return False
    memo = (str(where), tuple(key))
    if memo not in _MEMO:
        try:
            _MEMO[memo] = sha256_file(where)
        except TumorscopeError:
            return False
    return _MEMO[memo] == fp["sha256"]


def stat_identity(path: str | Path) -> list[int] | None:
    """The stat identity of ``path`` as fingerprints record it, or None if it is not there."""
    try:
        return _stat_key(os.stat(path))
    except OSError:
        return None
