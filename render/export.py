"""Exports: mesh files (VTP, STL, OBJ, PLY, binary glTF, self-contained HTML) and the bytes
behind the app's download buttons (3-D view as PNG and HTML, meshes as GLB and zipped VTP,
slices as PNG, tables as CSV).

Every file is written atomically. Coordinates stay world RAS+ millimetres in every format.

The HTML is a plotly ``Mesh3d`` page with plotly.js inlined (about 5 MB): it opens from disk in
any browser with no server and no network. ``pyvista.Plotter.export_html`` was not used: it
needs the trame packages (not installed here), starts trame/aiohttp server machinery and
crashes outside the main thread (e.g. in a Streamlit script), so it would need a child
process with a timeout; plotly is already a dependency and is what the app's 3-D view uses.

The ``.glb`` writer is our own (about 60 lines): VTK's ``vtkGLTFExporter`` writes JSON
glTF whatever the suffix, which glTF viewers reject as a ``.glb``, and needs a render window.

Each ``*_bytes`` / ``scene_*`` / ``meshes_*`` builder is a plain function returning ``bytes``;
the pages hand them to ``st.download_button`` as zero-argument callables, so nothing is
rendered or written until the user clicks (Streamlit runs the callable then, on its own thread).
"""

from __future__ import annotations

import io
import json
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pyvista as pv
from PIL import Image

from tumorscope.core.data.labels import REGIONS
from tumorscope.core.data.nifti import atomic_path, atomic_write_text
from tumorscope.core.errors import ConfigError

from .layers import TRUTH_PREFIX, CameraPreset, SceneOptions, named_layers
from .mesh import as_triangles, is_empty

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

MeshFormat = Literal["vtp", "stl", "obj", "ply", "glb", "html"]
MESH_FORMATS: tuple[str, ...] = get_args(MeshFormat)

PNG_SIZE_PX = (1280, 960)
HTML_MAX_TRIANGLES = 150_000
"""Surfaces above this are simplified in the HTML download, so the page stays light."""

# glTF is +Y up with the model facing +Z; RAS+ is +Z (superior) up. A 180-degree turn about
# (0, 1, 1) maps (x, y, z) -> (-x, z, y): superior up, anterior towards the viewer.
_RAS_TO_GLTF_ROTATION = [0.0, 0.7071067811865476, 0.7071067811865476, 0.0]


def _format_of(path: Path) -> str:
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in MESH_FORMATS:
        raise ConfigError(
            f"cannot export to {path.name!r}: suffix must be one of "
            f"{['.' + f for f in MESH_FORMATS]}, got {path.suffix!r}", path=path)
    return fmt


def export_mesh(mesh: pv.PolyData, path: str | Path, *, name: str = "mesh") -> Path:
    """Write one world-mm surface to ``path``; the format follows the suffix.

    ``.vtp`` keeps every point array (e.g. ``signed_distance_mm``); ``.stl``, ``.obj`` and
    ``.ply`` keep geometry (and normals where the format has them); ``.glb`` and ``.html``
    go through :func:`export_meshes` with ``name`` choosing the colour ("WT", "label_4", ...).

    >>> import tempfile
    >>> out = export_mesh(pv.Sphere(), Path(tempfile.mkdtemp()) / "s.stl")
    >>> pv.read(out).n_cells
    1680
    """
    path = Path(path)
    fmt = _format_of(path)
    if fmt in ("glb", "html"):
        return export_meshes({name: mesh}, path)
    with atomic_path(path) as tmp:
        mesh.save(tmp)
    return path


def export_meshes(
    meshes: Mapping[str, pv.PolyData],
    path: str | Path,
    *,
    title: str | None = None,
    camera: CameraPreset = "oblique",
    max_triangles: int | None = 150_000,
) -> Path:
    """Write several named surfaces to one ``.glb`` or ``.html`` file, coloured as on screen.

    ``meshes`` maps names ("WT", "TC", "ET", "label_1", "FP", "FN", "brain", others grey)
    to world-mm surfaces; empty meshes are left out. In the ``.glb`` each becomes a node and
    material of that name under a root node turning RAS+ into glTF's +Y-up frame (units
    stay mm). The ``.html`` has one legend entry per mesh (click to hide), ``camera`` as the
    initial view and meshes above ``max_triangles`` simplified to keep the page light.
    Truth surfaces are named ``truth_WT`` ...: translucent in their region's colour (colours
    and opacities: :func:`~tumorscope.render.layers.named_layers`). A case's comparison scene
    as a page, looking as the app's view does, is ``page_html`` of
    :func:`~tumorscope.render.plotly_scene.comparison_figure`.

    >>> import tempfile
    >>> out = export_meshes({"ET": pv.Sphere()}, Path(tempfile.mkdtemp()) / "case.glb")
    >>> out.read_bytes()[:4]
    b'glTF'
    """
    path = Path(path)
    fmt = _format_of(path)
    parts = {layer.name: layer.mesh for layer in named_layers(meshes)}
    if fmt == "glb":
        with atomic_path(path) as tmp:
            tmp.write_bytes(_glb_bytes(parts))
    elif fmt == "html":
        atomic_write_text(path, _plotly_html(parts, title=title, camera=camera,
                                             max_triangles=max_triangles))
    else:
        if len(parts) > 1:
            raise ConfigError(
                f"{path.suffix} holds one surface; got {len(parts)} ({list(parts)}): export "
                "each with export_mesh, or use .glb / .html for a multi-mesh scene", path=path)
        export_mesh(next(iter(parts.values()), pv.PolyData()), path)
    return path


def _glb_bytes(meshes: Mapping[str, pv.PolyData]) -> bytes:
    """A binary glTF 2.0 file: one JSON chunk and one BIN chunk holding every array."""
    blob = bytearray()
    doc: dict = {
        "asset": {"version": "2.0", "generator": "tumorscope.render"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": "RAS_mm", "rotation": _RAS_TO_GLTF_ROTATION, "children": []}],
        "meshes": [], "materials": [], "accessors": [], "bufferViews": [],
    }

    def add_array(array: np.ndarray, *, target: int, kind: str, component: int) -> int:
        data = np.ascontiguousarray(array).tobytes()
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(blob),
                                   "byteLength": len(data), "target": target})
        blob.extend(data + b"\0" * (-len(data) % 4))  # accessors need 4-byte alignment
        accessor = {"bufferView": len(doc["bufferViews"]) - 1, "componentType": component,
                    "count": int(array.shape[0]) if kind == "VEC3" else int(array.size),
                    "type": kind}
        if kind == "VEC3":
            accessor["min"] = array.min(axis=0).tolist()
            accessor["max"] = array.max(axis=0).tolist()
        doc["accessors"].append(accessor)
        return len(doc["accessors"]) - 1

    for layer in named_layers(meshes):
        name, mesh = layer.name, as_triangles(layer.mesh)
        attributes = {"POSITION": add_array(np.asarray(mesh.points, np.float32),
                                            target=34962, kind="VEC3", component=5126)}
        if "Normals" in mesh.point_data:
            normals = np.asarray(mesh.point_data["Normals"], np.float32)
            attributes["NORMAL"] = add_array(normals, target=34962, kind="VEC3", component=5126)
        indices = add_array(mesh.regular_faces.astype(np.uint32).ravel(), target=34963,
                            kind="SCALAR", component=5125)
        colour, opacity = layer.colour, layer.opacity
        doc["materials"].append({
            "name": name,
            "pbrMetallicRoughness": {"baseColorFactor": [*colour.rgb_float, opacity],
                                     "metallicFactor": 0.0, "roughnessFactor": 0.6},
            "alphaMode": "BLEND" if opacity < 1 else "OPAQUE",
            "doubleSided": True,
        })
        doc["meshes"].append({"name": name, "primitives": [{
            "attributes": attributes, "indices": indices, "mode": 4,
            "material": len(doc["materials"]) - 1}]})
        doc["nodes"].append({"name": name, "mesh": len(doc["meshes"]) - 1})
        doc["nodes"][0]["children"].append(len(doc["nodes"]) - 1)
    if blob:
        doc["buffers"] = [{"byteLength": len(blob)}]
    else:
        for key in ("meshes", "materials", "accessors", "bufferViews"):
            del doc[key]
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    chunks = struct.pack("<II", len(text), 0x4E4F534A) + text  # "JSON"
    if blob:
        chunks += struct.pack("<II", len(blob), 0x004E4942) + bytes(blob)  # "BIN\0"
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def page_html(figure: go.Figure) -> str:
    """A plotly figure as one self-contained HTML page (plotly.js inlined, no network)."""
    return figure.to_html(include_plotlyjs=True, full_html=True, include_mathjax=False,
                          default_width="100%", default_height="96vh")


def _plotly_html(
    meshes: Mapping[str, pv.PolyData], *, title: str | None, camera: CameraPreset,
    max_triangles: int | None,
) -> str:
    from .plotly_scene import named_figure

    return page_html(named_figure(meshes, title=title, camera=camera,
                                  max_triangles=max_triangles))


# --------------------------------------------------------------------------------------------
# bytes for download buttons


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
    from .scene import comparison_scene, screenshot

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
    from .plotly_scene import comparison_figure

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


def _via_file(suffix: str, write: Callable[[Path], Any]) -> bytes:
    with tempfile.TemporaryDirectory(prefix="tumorscope-export-") as folder:
        path = Path(folder) / f"scene{suffix}"
        write(path)
        return path.read_bytes()


def meshes_glb(meshes: Mapping[str, Any]) -> bytes:
    """All meshes in one binary glTF (:func:`export_meshes`), coloured as on screen."""
    return _via_file(".glb", lambda path: export_meshes(meshes, path))


def meshes_vtp_zip(meshes: Mapping[str, Any]) -> bytes:
    """A zip of one ``.vtp`` per mesh (VTP holds one surface; point arrays are kept)."""
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="tumorscope-export-") as folder, \
            zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, mesh in meshes.items():
            path = export_mesh(mesh, Path(folder) / f"{name}.vtp", name=name)
            archive.write(path, arcname=path.name)
    return buffer.getvalue()
