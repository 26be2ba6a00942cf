"""Every user-facing error type: each names the file, the value found and what was expected."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class TumorscopeError(Exception):
    """Base of the errors the command line turns into one readable line.

    ``path`` is the file or folder at fault (or ``None`` when the fault is not tied to a file),
    ``fault`` a short sentence saying what is wrong with it.
    """

    def __init__(self, fault: str, *, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.fault = fault
        super().__init__(f"{self.path}: {fault}" if self.path is not None else fault)


class CaseFileMissingError(TumorscopeError, FileNotFoundError):
    """A file a case needs (a modality, a label map) is not there."""


class CorruptFileError(TumorscopeError, OSError):
    """A file exists but cannot be decoded (truncated gzip, not a NIfTI, damaged header)."""


class UnreadableFileError(TumorscopeError, OSError):
    """A file or folder exists but cannot be opened: permission denied, a folder or a named
    pipe where a NIfTI file is expected, or another operating-system error while reading."""


class GeometryError(TumorscopeError, ValueError):
    """Wrong dimensionality, shapes that differ between modalities, or affines that differ."""


class VoxelValueError(TumorscopeError, ValueError):
    """Non-finite voxels (NaN or inf) in an image."""


class LabelError(TumorscopeError, ValueError):
    """A label map holds values outside the label set of its layout, or non-integer values."""


class ConfigError(TumorscopeError, ValueError):
    """A configuration value or option is not one of the allowed values."""


class LayoutError(TumorscopeError, ValueError):
    """A folder does not look like any known BraTS layout, or holds no case."""


def check_choice(option: str, value: T, allowed: Iterable[object], *,
                 path: str | Path | None = None) -> T:
    """Return ``value`` if it is one of ``allowed``, else raise :class:`ConfigError` listing them.

    >>> check_choice("norm", "layer", ("instance", "batch"))
    Traceback (most recent call last):
    ...
    tumorscope.core.errors.ConfigError: norm must be one of ['instance', 'batch'], got 'layer'
    """
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{option} must be one of {list(allowed)}, got {value!r}", path=path)
    return value


def yaml_problem(exc: Exception) -> str:
    """One line out of a YAML error: what is wrong and where (line, column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"
