"""Mesh export: VTP, STL, OBJ, PLY, binary glTF (.glb) and a self-contained interactive HTML.

Every file is written atomically. Coordinates stay world RAS+ millimetres in every format.

The HTML is a plotly ``Mesh3d`` page with plotly.js inlined (about 5 MB): it opens from disk in
any browser with no server and no network. ``pyvista.Plotter.export_html`` was not used: it
needs the trame packages (not installed here), starts trame/aiohttp server machinery and
crashes outside the main thread (e.g. in a Streamlit script), so it would need a child
process with a timeout; plotly is already a dependency and is what the app's 3-D view uses.

The ``.glb`` writer is our own (about 60 lines): VTK's ``vtkGLTFExporter`` writes JSON
glTF whatever the suffix, which glTF viewers reject as a ``.glb``, and needs a render window.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import pyvista as pv

from tumorscope.core.data.nifti import atomic_path, atomic_write_text
from tumorscope.core.errors import ConfigError

from .layers import CameraPreset, named_layers
from .mesh import as_triangles

if TYPE_CHECKING:
    import plotly.graph_objects as go

MeshFormat = Literal["vtp", "stl", "obj", "ply", "glb", "html"]
MESH_FORMATS: tuple[str, ...] = get_args(MeshFormat)

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
