"""Operating-system errors in words: which path, and what is wrong with it, on one line.

The command line (and the app) turn every :class:`OSError` that escapes a command into one
sentence through :func:`describe_os_error`; the wording of each ``errno`` lives here and
nowhere else. A path reported by the system may be one of
:func:`~tumorscope.core.data.nifti.atomic_path`'s temporaries; the file the user asked for is
named instead (:func:`temp_target`).
"""

from __future__ import annotations

import errno
import io
import linecache
import os
import re
from collections.abc import Mapping
from pathlib import Path

# What is wrong, per errno; ``{path}`` is the file or folder at fault, ``{action}`` what
# could not be done to it ("read" or "write").
_WORDS: dict[int, str] = {
    errno.ENOSPC: "disk full while writing {path}",
    errno.EDQUOT: "disk quota exceeded while writing {path}",
    errno.EFBIG: "file too large for its file system: {path}",
    errno.EROFS: "read-only file system: cannot write {path}",
    errno.EACCES: "permission denied: cannot {action} {path}",
    errno.EPERM: "operation not permitted: cannot {action} {path}",
    errno.ENOENT: "{path} does not exist",
    errno.EISDIR: "{path} is a folder; a file is needed there",
    errno.ENOTEMPTY: "{path} is not empty",
    errno.ENAMETOOLONG: "file name too long: {path}",
    errno.ELOOP: "too many levels of symbolic links (a link loop?): {path}",
    errno.EIO: "input/output error (failing disk or lost network share) on {path}",
    errno.EMFILE: "too many open files while opening {path}",
    errno.ENFILE: "too many open files while opening {path}",
    errno.EBUSY: "{path} is busy (in use, or a mount point)",
    errno.ENOMEM: "out of memory while using {path}",
}
# The same faults when the system named no path.
_WORDS_NO_PATH: dict[int, str] = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (failing disk or lost network share)",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.ENOMEM: "out of memory",
}
OUTPUT_FLAGS: tuple[str, ...] = ("--out", "--cache")
"""Path options naming what a command writes: a path below one that does not exist is one the
command was creating, not an input gone missing."""
VIRTUAL_FILE_SYSTEMS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "debugfs", "tracefs", "securityfs", "pstore",
    "bpf", "configfs", "fusectl", "devpts", "mqueue", "binfmt_misc", "efivarfs", "autofs",
})
"""File systems that are views of the kernel: they cannot hold a user's files."""
_CREATE_CALL_RE = re.compile(r"\b(mkdir|makedirs|mkdtemp|mkstemp)\(")
# Temporary names: ".NAME.RANDOM.tmpSUFFIX" or ".NAME.HOST-PID.RANDOM.tmpSUFFIX".
_TEMP_RE = re.compile(r"^\.(?P<body>.+)\.tmp(?P<suffix>(?:\.[^./]+)*)$")
_SHORT_WRITE_RE = re.compile(r"(\d+) requested and (\d+) written")


def temp_target(path: str | Path) -> Path:
    """The file an atomic-write temporary stands for; any other path unchanged.

    >>> temp_target("runs/x/predictions/.BraTS2021_00001.nii.gz.ab12cd34.tmp.nii.gz")
    PosixPath('runs/x/predictions/BraTS2021_00001.nii.gz')
    >>> temp_target(".metrics.csv.node_7-4242.k3j_x9q0.tmp.csv")
    PosixPath('metrics.csv')
    >>> temp_target("runs/x/metrics.csv")
    PosixPath('runs/x/metrics.csv')
    """
    path = Path(path)
    m = _TEMP_RE.match(path.name)
    if m is None:
        return path
    body, suffix = m["body"], m["suffix"]
    # The target is the shortest "NAME" before a "." that ends with the temp's suffix (the
    # writer keeps the target's suffix); what follows it is the writer's and random part.
    for i, ch in enumerate(body):
        if ch == "." and i > 0 and body[:i].endswith(suffix):
            return path.with_name(body[:i])
    return path


def _written_file(exc: BaseException) -> Path | None:
    """The file being written when ``exc`` was raised, found in its traceback.

    The system names no file for a failed ``write()`` (a full disk), so look for it: the
    innermost open file object, else the innermost ``path`` of a Tumorscope function.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase):
                name = getattr(value, "name", None)
                if isinstance(name, str | bytes) and name:
                    return Path(os.fsdecode(name))
    for frame in reversed(frames):
        if not str(frame.f_globals.get("__name__", "")).startswith("tumorscope."):
            continue
        value = frame.f_locals.get("path")
        if isinstance(value, str | Path) and str(value):
            return Path(value)
    return None


def failing_path(exc: OSError) -> Path | None:
    """The path ``exc`` is about, with atomic-write temporaries mapped to their target."""
    name = exc.filename
    path = Path(os.fsdecode(name)) if isinstance(name, str | bytes | os.PathLike) else None
    if path is None:
        path = _written_file(exc)
    return None if path is None else temp_target(path)


def _first_file_above(path: Path) -> Path | None:
    """``path`` or its nearest existing ancestor, if that is a file (not a folder)."""
    for p in (path, *path.parents):
        try:
            if p.is_dir():
                return None
            if p.exists() or p.is_symlink():
                return p
        except OSError:
            return None
    return None


def _same_or_below(path: Path, top: Path) -> bool:
    path, top = Path(os.path.abspath(path)), Path(os.path.abspath(top))
    return path == top or top in path.parents


def _flag_for(path: Path, flags: Mapping[str, object]) -> str | None:
    """The flag whose path is ``path`` or lies below it (so ``path`` had to be a folder)."""
    for flag, value in flags.items():
        if isinstance(value, str | Path) and _same_or_below(Path(value), path):
            return flag
    return None


def _not_a_folder(file: Path, flags: Mapping[str, object]) -> str:
    flag = _flag_for(file, flags)
    if flag is not None:
        return f"{file} is a file; {flag} needs a folder"
    return f"{file} is a file, but a folder is needed there"


def _action(path: Path) -> str:
    try:
        if path.exists() and not os.access(path, os.R_OK):
            return "read"
    except OSError:
        pass
    return "write"


def _low_space(path: Path | None) -> bool:
    for p in () if path is None else (path.parent, *path.parents):
        try:
            st = os.statvfs(p)
        except OSError:
            continue
        return st.f_bavail * st.f_frsize < 1024 * 1024
    return False


def _failed_in_create(exc: BaseException) -> bool:
    """Whether the call that raised ``exc`` was creating a folder (``mkdir``, ``makedirs``,
    a temporary folder), judged by the innermost frame of its traceback."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    if code.co_name in ("mkdir", "makedirs", "mkdtemp"):
        return True
    return bool(_CREATE_CALL_RE.search(linecache.getline(code.co_filename, tb.tb_lineno)))


def _being_created(path: Path, flags: Mapping[str, object]) -> bool:
    """Whether a missing ``path`` must be one a command was creating: the value of an output
    option (``--out``) itself, or a path below one whose folder is missing too or lies on a
    file system that cannot hold files. (A file missing from an existing output folder may
    have been read, so it is left to the usual wording.)"""
    for flag, value in flags.items():
        if flag not in OUTPUT_FLAGS or not isinstance(value, str | Path):
            continue
        if os.path.abspath(path) == os.path.abspath(value):
            return True
        if _same_or_below(path, Path(value)):
            above = _existing_ancestor(path)
            return above != path.parent or _file_system_type(above) in VIRTUAL_FILE_SYSTEMS
    return False


def _file_system_type(path: Path) -> str | None:
    """The type of the file system ``path`` lies on ("ext4", "proc"), where the system says
    (Linux: /proc/self/mounts); ``None`` elsewhere."""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = [line.split()[:3] for line in fh]
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
            best, kind = point, fields[2]
    return kind


def _existing_ancestor(path: Path) -> Path | None:
    for p in path.parents:
        try:
            if p.exists():
                return p
        except OSError:
            return None
    return None


def _cannot_create(path: Path, code: int | None) -> str | None:
    """Why ``path``, which a command was creating, could not be: its folder is missing, or
    lies on a file system that cannot hold files; ``None`` when there is nothing to add to
    the usual wording of ``code``."""
    try:
        if path.exists() or path.is_symlink():
            return None
    except OSError:
        return None
    above = _existing_ancestor(path)
    kind = None if above is None else _file_system_type(above)
    if above is not None and kind in VIRTUAL_FILE_SYSTEMS:
        return (f"cannot create {path} ({above} is on a {kind} file system, a view of the "
                "kernel that cannot hold files; choose a folder on a disk)")
    if code != errno.ENOENT:
        return None
    if above is None:
        return f"cannot create {path} (no folder above it exists)"
    if above != path.parent:
        return f"cannot create {path} (its folder {path.parent} does not exist)"
    return (f"cannot create {path} (the system says there is no such file or folder, "
            f"although {above} exists)")


def os_error_words(exc: OSError) -> str:
    """What is wrong, in plain words, without the path (for messages that name it already).

    >>> os_error_words(PermissionError(errno.EACCES, "Permission denied"))
    'permission denied'
    """
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if exc.errno in _WORDS_NO_PATH:
        return _WORDS_NO_PATH[exc.errno]
    return (exc.strerror or str(exc)).rstrip(".").lower()


def describe_os_error(exc: OSError, flags: Mapping[str, object] | None = None) -> str:
    """One line saying which path and what is wrong with it, in plain words.

    ``flags`` maps the command's path options as the user wrote them (``"--out"``) to their
    values, so that a file standing where a folder was asked for names the option.

    >>> describe_os_error(OSError(errno.ENOSPC, "No space left on device",
    ...                           "runs/x/predictions/.A.nii.gz.h-1.q1w2e3r4.tmp.nii.gz"))
    'disk full while writing runs/x/predictions/A.nii.gz'
    >>> describe_os_error(PermissionError(errno.EACCES, "Permission denied", "runs/x"))
    'permission denied: cannot write runs/x'

    An output that could not be created (an ``--out`` in /proc, or below a missing folder)
    is not reported as missing; an input that is missing is:

    >>> missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "no/such/out")
    >>> describe_os_error(missing, {"--out": "no/such/out"})
    'cannot create no/such/out (its folder no/such does not exist)'
    >>> describe_os_error(missing, {"--checkpoint": "no/such/out"})
    'no/such/out does not exist'
    """
    flags = flags or {}
    path = failing_path(exc)
    code = exc.errno
    if code is None and _SHORT_WRITE_RE.search(str(exc)):
        # numpy's tofile() reports a short write without an errno: almost always a full disk.
        if _low_space(path):
            code = errno.ENOSPC
        else:
            where = f" while writing {path}" if path is not None else ""
            return f"short write{where} ({exc})"
    if path is not None and code in (errno.EEXIST, errno.ENOTDIR):
        file = _first_file_above(path)
        if file is not None:
            return _not_a_folder(file, flags)
        if code == errno.EEXIST:
            return f"{path} already exists"
    if path is None:
        if code in _WORDS_NO_PATH:
            return _WORDS_NO_PATH[code]
        return str(exc.strerror or exc)
    if code in (errno.ENOENT, errno.EPERM) and (_failed_in_create(exc)
                                                or _being_created(path, flags)):
        # An output that could not be created does not "not exist": say why it cannot be.
        words = _cannot_create(path, code)
        if words is not None:
            return words
    if code in _WORDS:
        return _WORDS[code].format(path=path, action=_action(path))
    reason = (exc.strerror or str(exc)).rstrip(".")
    return f"{path}: {reason[:1].lower()}{reason[1:]}"


def check_output_folder(path: str | Path | None, *, may_be_read_only: bool = False) -> None:
    """Raise an :class:`OSError` now if ``path`` cannot be a folder to write into: it, or a
    folder above it, is a file, or (unless ``may_be_read_only``) it lies on a read-only file
    system. Meant to run before any work starts; :func:`describe_os_error` words it, naming
    the option when given the command's path options."""
    if path is None:
        return
    path = Path(path)
    file = _first_file_above(path)
    if file is not None:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(file))
    if may_be_read_only:
        return
    for p in (path, *path.parents):
        try:
            if not p.exists():
                continue
            read_only = bool(os.statvfs(p).f_flag & os.ST_RDONLY)
        except OSError:
            return
        if read_only:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return
