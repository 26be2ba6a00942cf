"""MATLAB v7.3 MAT-files: HDF5 behind a 512-byte MATLAB header, read and written with h5py.

What MATLAB writes (``save -v7.3``), and what this module reads and writes the same way:

- The first 512 bytes are an HDF5 *user block* holding the MATLAB header: 116 bytes of text
  (``MATLAB 7.3 MAT-file, Platform: ..., Created on: ... HDF5 schema 1.00 .``, space padded),
  8 bytes of subsystem offset, the version ``0x0200`` and the endian mark ``IM``; zeros after.
- Each variable is a dataset (a struct: a group of datasets) whose ``MATLAB_class``
  attribute names the MATLAB class (``double``, ``int16``, ``char``, ``logical``, ``struct``).
- MATLAB arrays are column-major, so HDF5 holds every array with its dimensions reversed: an
  ``m x n`` MATLAB matrix reads as ``(n, m)`` from h5py. :func:`matlab_value` transposes back.
- ``char`` arrays are uint16 character codes (``MATLAB_int_decode`` 2); ``logical`` is uint8;
  an empty array is stored as its dimensions with ``MATLAB_empty`` 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from tumorscope.core.data.nifti import atomic_path

USER_BLOCK_BYTES = 512
HEADER_PREFIX = b"MATLAB 7.3 MAT-file"
V5_PREFIX = b"MATLAB 5.0 MAT-file"
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
CREATED = "Tue Dec  1 00:00:00 2026"
"""The creation date written into headers: fixed, so a file's bytes depend only on its data."""

MatValue = np.ndarray | str
"""A MATLAB value in MATLAB's own orientation: a numeric or boolean array (``rows x cols``)
or a string (a ``1 x n`` char array)."""

_CLASS_OF_DTYPE = {
    np.dtype(np.float64): "double", np.dtype(np.float32): "single",
    np.dtype(np.int8): "int8", np.dtype(np.int16): "int16", np.dtype(np.int32): "int32",
    np.dtype(np.int64): "int64", np.dtype(np.uint8): "uint8", np.dtype(np.uint16): "uint16",
    np.dtype(np.uint32): "uint32", np.dtype(np.uint64): "uint64", np.dtype(bool): "logical",
}


def header(*, created: str = CREATED, platform: str = "GLNXA64") -> bytes:
    """The 512-byte user block MATLAB writes in front of a v7.3 file.

    >>> block = header()
    >>> len(block), block[:19], block[124:128]
    (512, b'MATLAB 7.3 MAT-file', b'\\x00\\x02IM')
    """
    text = (f"MATLAB 7.3 MAT-file, Platform: {platform}, Created on: {created} "
            "HDF5 schema 1.00 .").encode("ascii")
    return (text.ljust(116, b" ")[:116] + b" " * 8 + b"\x00\x02" + b"IM").ljust(
        USER_BLOCK_BYTES, b"\x00")


def file_kind(path: str | Path) -> str:
    """What the first bytes of ``path`` say it is: ``"v7.3"`` (MATLAB header then HDF5),
    ``"hdf5"`` (HDF5 without MATLAB's header), ``"v5"`` (a MATLAB 5 MAT-file, which h5py
    cannot read) or ``"other"``. Raises :class:`OSError` if it cannot be read."""
    with open(path, "rb") as fh:
        head = fh.read(USER_BLOCK_BYTES + len(HDF5_SIGNATURE))
    if head.startswith(HDF5_SIGNATURE):
        return "hdf5"
    if head.startswith(V5_PREFIX):
        return "v5"
    if head.startswith(HEADER_PREFIX) and head[USER_BLOCK_BYTES:].startswith(HDF5_SIGNATURE):
        return "v7.3"
    return "other"


def _attr_text(obj: h5py.HLObject, name: str) -> str | None:
    value = obj.attrs.get(name)
    if value is None:
        return None
    if isinstance(value, np.ndarray):
        value = value.tobytes() if value.dtype.kind == "S" else value.item()
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def matlab_class(obj: h5py.HLObject) -> str | None:
    """The ``MATLAB_class`` attribute of a dataset or group, or ``None`` without one."""
    return _attr_text(obj, "MATLAB_class")


def matlab_value(ds: h5py.Dataset) -> MatValue:
    """A dataset as MATLAB sees it: dimensions in MATLAB order (HDF5's reversed), ``char``
    decoded to a string, ``logical`` to bool, an empty array (``MATLAB_empty``) as an array
    of its MATLAB dimensions with no elements (or ``""`` for char).

    Raises :class:`OSError` (h5py's) when the data cannot be read (a truncated file)."""
    cls = matlab_class(ds)
    if ds.attrs.get("MATLAB_empty"):
        dims = tuple(int(d) for d in np.asarray(ds[()]).ravel()) if ds.size else (0, 0)
        return "" if cls == "char" else np.zeros(dims)
    arr = np.asarray(ds[()]).T
    if cls == "char":
        codes = arr.ravel(order="F")
        return "".join(chr(int(c)) for c in codes).rstrip("\x00")
    if cls == "logical":
        return arr.astype(bool)
    return arr


def _write_value(parent: h5py.Group, name: str, value: MatValue, *, compress: bool) -> None:
    if isinstance(value, str):
        codes = np.array([[ord(ch) for ch in value]], dtype=np.uint16)  # 1 x n
        ds = parent.create_dataset(name, data=codes.T)
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
        return
    arr = np.asarray(value)
    if arr.ndim < 2:  # MATLAB has no 0-D or 1-D arrays: a scalar is 1 x 1, a vector a row
        arr = arr.reshape(1, -1)
    cls = _CLASS_OF_DTYPE.get(arr.dtype)
    if cls is None:
        raise TypeError(f"{name}: no MATLAB class for dtype {arr.dtype}")
    data = arr.T.astype(np.uint8) if cls == "logical" else arr.T
    big = compress and data.size >= 4096
    ds = parent.create_dataset(name, data=np.ascontiguousarray(data),
                               **({"compression": "gzip", "compression_opts": 3} if big else {}))
    ds.attrs["MATLAB_class"] = np.bytes_(cls)
    if cls == "logical":
        ds.attrs["MATLAB_int_decode"] = np.int32(1)


def write_mat(path: str | Path, variables: Mapping[str, MatValue | Mapping[str, MatValue]], *,
              created: str = CREATED, compress: bool = True) -> None:
    """Write ``variables`` to ``path`` as a MATLAB v7.3 MAT-file, atomically.

    A value that is a mapping becomes a ``struct`` (its fields in the given order, listed in
    ``MATLAB_fields`` as MATLAB does); arrays are given in MATLAB orientation (``rows x
    cols``) and stored transposed, as MATLAB stores them; large arrays are deflated (level
    3, MATLAB's). The file's bytes depend only on ``variables`` and ``created``.

    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "x.mat"
    >>> write_mat(p, {"s": {"a": np.array([[1.0, 2.0, 3.0]]), "name": "ab"}})
    >>> file_kind(p)
    'v7.3'
    >>> with h5py.File(p, "r") as f:
    ...     f["s/a"].shape, matlab_value(f["s/a"]).shape, matlab_value(f["s/name"])
    ((3, 1), (1, 3), 'ab')
    """
    vlen = h5py.vlen_dtype(np.dtype("S1"))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", userblock_size=USER_BLOCK_BYTES, libver="earliest") as f:
            for name, value in variables.items():
                if isinstance(value, Mapping):
                    group = f.create_group(name)
                    group.attrs["MATLAB_class"] = np.bytes_("struct")
                    fields = np.empty(len(value), dtype=object)
                    fields[:] = [np.frombuffer(k.encode("ascii"), dtype="S1") for k in value]
                    group.attrs.create("MATLAB_fields", fields, dtype=vlen)
                    for field, item in value.items():
                        _write_value(group, field, item, compress=compress)
                else:
                    _write_value(f, name, value, compress=compress)
        with open(tmp, "r+b") as fh:
            fh.write(header(created=created))
