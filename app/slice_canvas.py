"""The slice canvas: a view the browser draws from volumes it fetches once, so that stepping
through slices (wheel, arrow keys, Page Up/Down on the view) needs no server round trip.

Python sends the windowed grey volume and the overlay's code map (render's
:func:`~tumorscope.render.overlay_codes.overlay_codes`, the description the server's pictures
are painted from) as gzip blobs, named by their content, into a folder that Streamlit serves
as the component's own (``$TUMORSCOPE_CACHE/slice_canvas``); the browser caches them by name.
Each rerun sends only small arguments: the blobs' names, the palette, the slice, the
crosshair and the viewport. The view reports its slice back (after ``REPORT_MS`` without a
further step) and its clicks as ``streamlit_image_coordinates`` does, so the sliders, the
other views and the readout follow.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import time
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import streamlit.components.v1 as components

from tumorscope.core.data.nifti import atomic_path
from tumorscope.core.data.preprocess import default_cache_dir
from tumorscope.render import slices, style
from tumorscope.render.overlay_codes import CodedOverlay, Overlay, OverlayStyle, overlay_codes

log = logging.getLogger(__name__)

FRONTEND = Path(__file__).parent / "frontend" / "slice_canvas"
BLOBS = "blobs"
REPORT_MS = 120
"""How long after a step without another the view tells Python its slice."""
KEEP_BYTES = 2 * 1024**3
"""Blobs beyond this total are removed, oldest first, when the app starts."""

_component: Any = None


def served_dir() -> Path:
    """The folder Streamlit serves for the component: its page and the blobs."""
    return default_cache_dir() / "slice_canvas"


def _prune(folder: Path) -> None:
    try:
        blobs = sorted((p.stat().st_mtime, p.stat().st_size, p) for p in folder.iterdir()
                       if p.suffix == ".gz")
    except OSError:
        return
    total = sum(size for _, size, _ in blobs)
    for _, size, path in blobs:
        if total <= KEEP_BYTES:
            break
        path.unlink(missing_ok=True)
        total -= size


def _declare() -> Any:
    global _component
    if _component is None:
        folder = served_dir()
        (folder / BLOBS).mkdir(parents=True, exist_ok=True)
        # The route serves one folder, and the blobs must lie in it: the page is copied
        # there (replaced when this version's differs).
        for source in FRONTEND.iterdir():
            target = folder / source.name
            if not target.is_file() or target.read_bytes() != source.read_bytes():
                with atomic_path(target) as tmp:
                    shutil.copyfile(source, tmp)
        _prune(folder / BLOBS)
        _component = components.declare_component("tumorscope_slice_canvas",
                                                  path=str(folder))
    return _component


def _write_blob(array: np.ndarray) -> str:
    """``array``'s C-order bytes gzipped under their content hash; the URL relative to the
    component's page."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    digest = hashlib.blake2b(data.data, digest_size=16)
    digest.update(repr(data.shape).encode())
    name = f"{digest.hexdigest()}.u8.gz"
    path = served_dir() / BLOBS / name
    if path.is_file():
        os.utime(path)  # in use: last to be pruned
    else:
        with atomic_path(path) as tmp:
            tmp.write_bytes(gzip.compress(data.data, compresslevel=1, mtime=0))
    return f"./{BLOBS}/{name}"


class _BlobMemo:
    """Blob URLs of derived volumes, per source arrays (held by weak reference: the app's
    volume caches own them) and settings; a blob removed since is written again."""

    def __init__(self, size: int = 32) -> None:
        self.entries: OrderedDict[tuple, tuple[tuple, Any]] = OrderedDict()
        self.size = size

    def lookup(self, arrays: Sequence[np.ndarray | None], settings: tuple) -> Any:
        """What was stored for these very arrays and settings, if its blobs are still there."""
        hit = self.entries.get((tuple(id(a) for a in arrays), settings))
        if hit is None:
            return None
        refs, urls = hit
        alive = all((r is None and a is None) or (r is not None and r() is a)
                    for r, a in zip(refs, arrays, strict=True))
        if not alive or not all((served_dir() / u).is_file() for u in _urls(urls)):
            return None
        self.entries.move_to_end((tuple(id(a) for a in arrays), settings))
        return urls

    def store(self, arrays: Sequence[np.ndarray | None], settings: tuple, urls: Any) -> Any:
        self.entries[(tuple(id(a) for a in arrays), settings)] = (
            tuple(None if a is None else weakref.ref(a) for a in arrays), urls)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return urls

    def get(self, arrays: Sequence[np.ndarray | None], settings: tuple, make: Any) -> Any:
        hit = self.lookup(arrays, settings)
        return hit if hit is not None else self.store(arrays, settings, make())


def _urls(value: str | tuple) -> list[str]:
    """The blobs a memo value names: a grey URL, or a codes (URL or None, palette) pair."""
    if isinstance(value, str):
        return [value]
    return [value[0]] if value[0] else []


_grey = _BlobMemo()
_codes = _BlobMemo()


def grey_url(image: np.ndarray, *, level: float, width: float) -> str:
    """The image windowed to 0..255 grey (render's window), as a blob."""
    return _grey.get([image], (float(level), float(width)), lambda: _write_blob(
        slices.window(image, level=level, width=width)))


def codes_url(view: slices.View, prediction: np.ndarray | None, truth: np.ndarray | None,
              prediction_b: np.ndarray | None, *, overlay: Overlay, overlay_style: OverlayStyle,
              alpha: float, region: str) -> tuple[str | None, tuple]:
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
    coded: CodedOverlay = overlay_codes(
        prediction, truth, prediction_b, overlay=overlay, overlay_style=overlay_style,
        alpha=alpha, region=region, axes=axes)
    urls = (None, ()) if not coded.palette else (_write_blob(coded.codes), coded.palette)
    return _codes.store(arrays, (*shared, axes) if coded.per_plane else shared, urls)


def slice_canvas(*, view: slices.View, case: str, image: np.ndarray, spacing_mm: Sequence[float],
                 xyz: Sequence[int], seq: int, level: float, width: float,
                 prediction: np.ndarray | None, truth: np.ndarray | None,
                 prediction_b: np.ndarray | None, overlay: Overlay, overlay_style: OverlayStyle,
                 alpha: float, region: str, crosshair: bool, display_px: int, zoom: float,
                 key: str) -> dict | None:
    """Draw ``view`` in the browser; returns its last value (a click's x, y, width, height,
    unix_time, and the ``slice`` with its ``slice_event``), or None before any."""
    start = time.perf_counter()
    grey = grey_url(image, level=level, width=width)
    codes, palette = codes_url(view, prediction, truth, prediction_b, overlay=overlay,
                               overlay_style=overlay_style, alpha=alpha, region=region)
    port = slices.viewport(image.shape, view, xyz, zoom)
    log.debug("slice canvas %s: blobs ready in %.0f ms", view,
              (time.perf_counter() - start) * 1000)
    return _declare()(
        view=view, case=case, grey=grey, codes=codes,
        palette=[[list(rgb), a] for rgb, a in palette], shape=list(image.shape),
        axes=list(slices.VIEW_AXES[view]), slice=int(xyz[slices.AXIS_OF_VIEW[view]]),
        seq=int(seq), xyz=[int(v) for v in xyz], crosshair=bool(crosshair),
        crosshair_alpha=slices.CROSSHAIR_ALPHA, crosshair_rgb=list(style.CROSSHAIR_COLOUR.rgb),
        port=[port.row0, port.col0, port.rows, port.cols],
        size=list(slices.view_size(image.shape, spacing_mm, view, display_px)),
        letters=list(slices.EDGE_LETTERS[view]), letter_px=max(12, display_px // 24),
        report_ms=REPORT_MS, key=key, default=None)
