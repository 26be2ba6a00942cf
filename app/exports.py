"""Bytes for the download buttons: the 3-D view as PNG and HTML, meshes (GLB, VTP), slices, CSV.

Each builder is a plain function returning ``bytes``; the pages hand them to
``st.download_button`` as zero-argument callables, so nothing is rendered or written until
the user clicks (Streamlit runs the callable then, on its own thread).
"""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from tumorscope.core.data.labels import REGIONS
from tumorscope.render.layers import TRUTH_PREFIX, SceneOptions
from tumorscope.render.mesh import is_empty

PNG_SIZE_PX = (1280, 960)
HTML_MAX_TRIANGLES = 150_000
"""Surfaces above this are simplified in the HTML download, so the page stays light."""


def png_bytes(image: np.ndarray) -> bytes:
    """An ``(H, W, 3|4)`` uint8 array as PNG bytes.

    >>> png_bytes(np.zeros((2, 3, 3), np.uint8))[:4]
    b'\\x89PNG'
    """
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def csv_bytes(table: pd.DataFrame) -> bytes:
    """A table as UTF-8 CSV without the index."""
    return table.to_csv(index=False).encode("utf-8")


def scene_png(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    options: SceneOptions | None = None,
) -> bytes:
    """The 3-D view as a PNG: the page's scene (same ``options``: layers, opacities, camera)
    painted off-screen by render's VTK painter; ``options.window_size`` sets its size."""
    from tumorscope.render.scene import comparison_scene, screenshot

    plotter = comparison_scene(truth, prediction, brain=brain, errors=errors, dice=dice,
                               options=options or SceneOptions(window_size=PNG_SIZE_PX))
    try:
        return png_bytes(screenshot(plotter))
    finally:
        plotter.close()


def scene_html(
    truth: Mapping[str, Any] | None,
    prediction: Mapping[str, Any] | None,
    *,
    brain: Any | None = None,
    errors: Mapping[str, Any] | None = None,
    dice: Mapping[str, float] | None = None,
    options: SceneOptions | None = None,
) -> bytes:
    """The 3-D view as a self-contained interactive HTML page: the page's own plotly scene
    (same ``options``), surfaces above :data:`HTML_MAX_TRIANGLES` simplified."""
    from tumorscope.render.export import page_html
    from tumorscope.render.plotly_scene import comparison_figure

    figure = comparison_figure(truth, prediction, brain=brain, errors=errors, dice=dice,
                               options=options, max_triangles=HTML_MAX_TRIANGLES)
    return page_html(figure).encode("utf-8")


def named_meshes(truth: Mapping[str, Any] | None, prediction: Mapping[str, Any] | None, *,
                 show: Iterable[str] = REGIONS, brain: Any | None = None,
                 errors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One flat name -> mesh map for export: prediction regions keep their region names
    (and colours), truth ones are ``truth_WT`` ... (the region colour, translucent)."""
    shown = [r for r in REGIONS if r in set(show)]
    meshes: dict[str, Any] = {}
    for region in shown:
        if prediction and region in prediction:
            meshes[region] = prediction[region]
    for region in shown:
        if truth and region in truth:
            meshes[f"{TRUTH_PREFIX}{region}"] = truth[region]
    meshes.update(errors or {})
    if brain is not None:
        meshes["brain"] = brain
    return {n: m for n, m in meshes.items() if not is_empty(m)}


def _via_file(suffix: str, write: Any) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tumorscope-export-") as folder:
        path = Path(folder) / f"scene{suffix}"
        write(path)
        return path.read_bytes()


def meshes_glb(meshes: Mapping[str, Any]) -> bytes:
    """All meshes in one binary glTF (``render.export``), coloured as on screen."""
    from tumorscope.render.export import export_meshes

    return _via_file(".glb", lambda path: export_meshes(meshes, path))


def meshes_vtp_zip(meshes: Mapping[str, Any]) -> bytes:
    """A zip of one ``.vtp`` per mesh (VTP holds one surface; point arrays are kept)."""
    from tumorscope.render.export import export_mesh

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="tumorscope-export-") as folder, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, mesh in meshes.items():
            path = export_mesh(mesh, Path(folder) / f"{name}.vtp", name=name)
            archive.write(path, arcname=path.name)
    return buffer.getvalue()
