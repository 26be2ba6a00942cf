"""The slice canvas: a view the browser draws from volumes it fetches once, so that stepping
through slices (wheel, arrow keys, Page Up/Down on the view) needs no server round trip.

Python sends the windowed grey volume and the overlay's code map (render's
:func:`~tumorscope.render.overlay_codes.overlay_codes`, the description the server's pictures
are painted from) as gzip blobs, named by their content, into a folder that Streamlit serves
as the component's own (``$TUMORSCOPE_CACHE/slice_canvas/<page version>``; windowed copies of
the volumes viewed, kept under ``KEEP_BYTES``, oldest removed first); the browser caches them
by name. Each rerun sends only small arguments: the blobs' names, the palette, the slice, the
crosshair, the viewport and which plane row and column each screen pixel shows (from PIL's
own nearest-neighbour resize, as the server's pictures are enlarged). The view reports its
slice back (after ``REPORT_MS`` without a further step) and its clicks as
``streamlit_image_coordinates`` does, so the sliders, the other views and the readout follow.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import streamlit.components.v1 as components
from PIL import Image

from tumorscope.core.data.nifti import atomic_path, is_temp_file
from tumorscope.core.data.preprocess import default_cache_dir
from tumorscope.render import slices, style
from tumorscope.render.overlay_codes import Overlay, OverlayStyle, overlay_codes

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).parent / "frontend" / "slice_canvas"
BLOBS = "blobs"
REPORT_MS = 120
"""How long after a step without another the view tells Python its slice."""
KEEP_BYTES = 2 * 1024**3
"""Blobs beyond this total are removed, oldest first (at start, then every PRUNE_EVERY)."""
PRUNE_EVERY = 256 * 1024**2
"""Bytes written between two prunings."""

T = TypeVar("T")
Codes = tuple[str | None, tuple[tuple[tuple[int, int, int], float], ...]]
"""A code map's blob URL (None: nothing painted) and its palette."""

_lock = threading.Lock()  # sessions run in threads of one process
_component: Any = None
_written = 0


@lru_cache(maxsize=1)
def _version() -> str:
    digest = hashlib.blake2b(digest_size=6)
    for source in sorted(FRONTEND.iterdir()):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def served_dir() -> Path:
    """The folder Streamlit serves for the component: this version's page and its blobs
    (two app versions sharing a cache each keep their own page)."""
    return default_cache_dir() / "slice_canvas" / _version()


def _prune(folder: Path) -> None:
    blobs = []
    for path in folder.glob("*.gz"):
        if is_temp_file(path.name):  # another process is writing it
            continue
        try:
            stat = path.stat()
        except OSError:
            continue
        blobs.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in blobs)
    for _, size, path in sorted(blobs):
        if total <= KEEP_BYTES:
            break
        try:
            path.unlink()
        except OSError:
            continue
        total -= size


def _declare() -> Callable[..., Any]:
    global _component
    with _lock:
        if _component is None:
            folder = served_dir()
            (folder / BLOBS).mkdir(parents=True, exist_ok=True)
            # The route serves one folder, and the blobs must lie in it: the page is copied.
            for source in FRONTEND.iterdir():
                target = folder / source.name
                if not target.is_file() or target.read_bytes() != source.read_bytes():
                    with atomic_path(target) as tmp:
                        shutil.copyfile(source, tmp)
            _prune(folder / BLOBS)
            _component = components.declare_component("tumorscope_slice_canvas",
                                                      path=str(folder))
    return _component


def _touch(path: Path) -> None:
    try:
        os.utime(path)  # in use: the last to be pruned
    except OSError:  # another user's blob: it stays as it is
        pass


def _write_blob(array: np.ndarray) -> str:
    """``array``'s C-order bytes gzipped under their content hash; the URL relative to the
    component's page."""
    global _written
    data = np.ascontiguousarray(array, dtype=np.uint8)
    digest = hashlib.blake2b(data.data, digest_size=16)
    digest.update(repr(data.shape).encode())
    name = f"{digest.hexdigest()}.u8.gz"
    path = served_dir() / BLOBS / name
    if path.is_file():
        _touch(path)
    else:
        packed = gzip.compress(data.data, compresslevel=1, mtime=0)
        with atomic_path(path) as tmp:
            tmp.write_bytes(packed)
        with _lock:
            _written += len(packed)
            prune = _written >= PRUNE_EVERY
            if prune:
                _written = 0
        if prune:
            _prune(path.parent)
    return f"./{BLOBS}/{name}"


class _BlobMemo(Generic[T]):
    """What was made from source arrays (held by weak reference: the app's volume caches
    own them) and settings; an entry whose blob has been removed since is made again."""

    def __init__(self, urls: Callable[[T], list[str]], size: int = 32) -> None:
        self.entries: OrderedDict[tuple, tuple[tuple, T]] = OrderedDict()
        self.urls, self.size = urls, size

    def lookup(self, arrays: Sequence[np.ndarray | None], settings: tuple) -> T | None:
        key = (tuple(id(a) for a in arrays), settings)
        with _lock:
            hit = self.entries.get(key)
            if hit is not None:
                self.entries.move_to_end(key)
        if hit is None:
            return None
        refs, value = hit
        alive = all((r is None and a is None) or (r is not None and r() is a)
                    for r, a in zip(refs, arrays, strict=True))
        paths = [served_dir() / u for u in self.urls(value)]
        if not alive or not all(p.is_file() for p in paths):
            return None
        for path in paths:
            _touch(path)
        return value

    def store(self, arrays: Sequence[np.ndarray | None], settings: tuple, value: T) -> T:
        with _lock:
            self.entries[(tuple(id(a) for a in arrays), settings)] = (
                tuple(None if a is None else weakref.ref(a) for a in arrays), value)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        return value


_grey: _BlobMemo[str] = _BlobMemo(lambda url: [url])
_codes: _BlobMemo[Codes] = _BlobMemo(lambda codes: [codes[0]] if codes[0] else [])


def grey_url(image: np.ndarray, *, level: float, width: float) -> str:
    """The image windowed to 0..255 grey (render's window), as a blob."""
    settings = (float(level), float(width))
    hit = _grey.lookup([image], settings)
    if hit is not None:
        return hit
    return _grey.store([image], settings,
                       _write_blob(slices.window(image, level=level, width=width)))


def codes_url(view: slices.View, prediction: np.ndarray | None, truth: np.ndarray | None,
              prediction_b: np.ndarray | None, *, overlay: Overlay, overlay_style: OverlayStyle,
              alpha: float, region: str) -> Codes:
    """``(blob URL or None when nothing is painted, palette)`` of the overlay over whole
    volumes; outlines are traced in ``view``'s planes."""
    axes = slices.VIEW_AXES[view][1:]
    arrays = [prediction, truth, prediction_b]
    shared = (overlay, overlay_style, round(float(alpha), 6), region)
    # A filled overlay is the same for every view: one blob, found by any view's settings.
    for settings in (shared, (*shared, axes)):
        hit = _codes.lookup(arrays, settings)
        if hit is not None:
            return hit
    coded = overlay_codes(prediction, truth, prediction_b, overlay=overlay,
                          overlay_style=overlay_style, alpha=alpha, region=region, axes=axes)
    value: Codes = (None, ()) if not coded.palette else (_write_blob(coded.codes),
                                                         coded.palette)
    return _codes.store(arrays, (*shared, axes) if coded.per_plane else shared, value)


@lru_cache(maxsize=64)
def nearest_index(n: int, size: int) -> list[int]:
    """Which of ``n`` voxels each of ``size`` pixels shows when PIL enlarges a row with
    NEAREST (what render_view does): its rounding at exact halves, by PIL itself.

    >>> nearest_index(2, 5)
    [0, 0, 1, 1, 1]
    """
    row = Image.fromarray(np.arange(n, dtype=np.int32)[None, :])  # mode "I"
    return np.asarray(row.resize((size, 1), Image.NEAREST))[0].astype(int).tolist()


def slice_canvas(*, view: slices.View, case: str, image: np.ndarray, xyz: Sequence[int],
                 port: slices.Viewport, size: tuple[int, int], seq: int, level: float,
                 width: float, prediction: np.ndarray | None, truth: np.ndarray | None,
                 prediction_b: np.ndarray | None, overlay: Overlay, overlay_style: OverlayStyle,
                 alpha: float, region: str, crosshair: bool, display_px: int,
                 key: str) -> dict | None:
    """Draw ``view`` (its ``port`` of the plane, ``size`` (height, width) pixels large, as
    render_view draws it) in the browser; returns its last value (a
    click's x, y, width, height, unix_time, and the ``slice`` with its ``slice_event``,
    ``seq`` and ``case``), or None before any. Raises OSError when the blobs cannot be
    written."""
    grey = grey_url(image, level=level, width=width)
    codes, palette = codes_url(view, prediction, truth, prediction_b, overlay=overlay,
                               overlay_style=overlay_style, alpha=alpha, region=region)
    height, width_px = size
    return _declare()(
        view=view, case=case, grey=grey, codes=codes,
        palette=[[list(rgb), a] for rgb, a in palette], shape=list(image.shape),
        axes=list(slices.VIEW_AXES[view]), slice=int(xyz[slices.AXIS_OF_VIEW[view]]),
        seq=int(seq), xyz=[int(v) for v in xyz], crosshair=bool(crosshair),
        crosshair_alpha=slices.CROSSHAIR_ALPHA, crosshair_rgb=list(style.CROSSHAIR_COLOUR.rgb),
        port=[port.row0, port.col0, port.rows, port.cols], size=[height, width_px],
        rows_of=nearest_index(port.rows, height), cols_of=nearest_index(port.cols, width_px),
        letters=list(slices.EDGE_LETTERS[view]), letter_px=max(12, display_px // 24),
        report_ms=REPORT_MS, key=key, default=None)
