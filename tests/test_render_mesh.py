"""Region meshes in world mm, signed distances and mesh exports (the cache:
test_render_mesh_cache.py)."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import re
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pyvista as pv  # noqa: E402

from tumorscope.core.errors import ConfigError, GeometryError  # noqa: E402
from tumorscope.render import style  # noqa: E402
from tumorscope.render.export import export_mesh, export_meshes  # noqa: E402
from tumorscope.render.mesh import (  # noqa: E402
    DISTANCE_ARRAY,
    brain_surface,
    error_meshes,
    mask_surface,
    region_meshes,
    signed_distance_mm,
)

# 2 mm voxels, x flipped (det < 0) and an offset: a surface that survives this affine has
# its winding, spacing and origin right.
AFFINE = np.array([[-2.0, 0, 0, 100.0], [0, 2.0, 0, -40.0], [0, 0, 2.0, 7.0], [0, 0, 0, 1]])
SHAPE = (56, 56, 56)


def world_grid(affine: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """World mm coordinates of every voxel centre, (3, X, Y, Z)."""
    idx = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *shape)


def ball(centre_mm, radius_mm, *, affine=AFFINE, shape=SHAPE) -> np.ndarray:
    xyz = world_grid(affine, shape)
    c = np.asarray(centre_mm, dtype=float)[:, None, None, None]
    return np.sqrt(((xyz - c) ** 2).sum(0)) <= radius_mm


CENTRE_MM = AFFINE[:3, :3] @ np.array([27.5, 27.5, 27.5]) + AFFINE[:3, 3]


def test_sphere_area_volume_centre_and_outward_normals() -> None:
    r = 40.0  # 20 voxels of 2 mm
    surf = mask_surface(ball(CENTRE_MM, r), AFFINE)
    assert surf.area == pytest.approx(4 * np.pi * r**2, rel=0.03)
    assert surf.volume == pytest.approx(4 / 3 * np.pi * r**3, rel=0.02)
    assert np.allclose(surf.center, CENTRE_MM, atol=0.5)
    radial = surf.points - CENTRE_MM
    radial /= np.linalg.norm(radial, axis=1, keepdims=True)
    cos = (surf.point_data["Normals"] * radial).sum(1)
    assert cos.min() > 0.5 and np.median(cos) > 0.98


def test_anisotropic_spacing_gives_a_sphere_in_mm() -> None:
    affine = np.array([[1.5, 0, 0, -30.0], [0, -1.0, 0, 20.0], [0, 0, 2.5, 0], [0, 0, 0, 1]])
    shape = (50, 70, 30)
    centre = affine[:3, :3] @ (np.array(shape) / 2) + affine[:3, 3]
    surf = mask_surface(ball(centre, 28.0, affine=affine, shape=shape), affine)
    extent = np.ptp(np.asarray(surf.bounds).reshape(3, 2), axis=1)
    assert np.allclose(extent, 56.0, atol=2.5)
    assert surf.volume == pytest.approx(4 / 3 * np.pi * 28.0**3, rel=0.03)


def test_regions_and_raw_labels_are_nested_and_named() -> None:
    lab = np.zeros(SHAPE, np.uint8)
    lab[ball(CENTRE_MM, 30)] = 2
    lab[ball(CENTRE_MM, 18)] = 4
    lab[ball(CENTRE_MM, 10)] = 1
    meshes = region_meshes(lab, AFFINE, names=["WT", "TC", "ET", "label_1", "label_2"])
    vol = {k: m.volume for k, m in meshes.items()}
    assert vol["WT"] > vol["TC"] > vol["ET"] > 0
    assert vol["TC"] == pytest.approx(4 / 3 * np.pi * 18**3, rel=0.04)
    assert vol["label_1"] == pytest.approx(4 / 3 * np.pi * 10**3, rel=0.06)
    # Edema is a shell: its surface has an inner and an outer sheet, volume WT - TC.
    assert vol["label_2"] == pytest.approx(vol["WT"] - vol["TC"], rel=0.03)
    with pytest.raises(ConfigError, match="expected any of"):
        region_meshes(lab, AFFINE, names=["NCR"])


def test_mask_on_the_grid_edge_still_closes() -> None:
    m = np.zeros((10, 10, 10), bool)
    m[:4, :4, :4] = True
    s = mask_surface(m, np.eye(4), smooth_iterations=0)
    assert s.volume == pytest.approx(64, rel=0.01)


def test_empty_inputs_give_empty_meshes_not_errors() -> None:
    empty = np.zeros((12, 12, 12), np.uint8)
    assert mask_surface(empty, AFFINE).n_points == 0
    assert all(m.n_points == 0 for m in region_meshes(empty, AFFINE).values())
    assert brain_surface(empty, AFFINE).n_points == 0
    e = error_meshes(empty, empty, AFFINE)
    assert e["FP"].n_points == 0 and e["FN"].n_points == 0
    some = mask_surface(np.pad(np.ones((4, 4, 4), bool), 3), AFFINE)
    d = signed_distance_mm(some, pv.PolyData())[DISTANCE_ARRAY]
    assert d.shape == (some.n_points,) and np.isnan(d).all()
    assert signed_distance_mm(pv.PolyData(), some)[DISTANCE_ARRAY].shape == (0,)


def test_bad_geometry_is_refused_with_the_shape() -> None:
    with pytest.raises(GeometryError, match="3-D"):
        mask_surface(np.ones((4, 4), bool), AFFINE)
    with pytest.raises(GeometryError, match="singular"):
        mask_surface(np.ones((4, 4, 4), bool), np.zeros((4, 4)))


def test_signed_distance_of_offset_spheres_matches_geometry() -> None:
    r, d = 30.0, 6.0  # offset of 3 voxels along x
    other = CENTRE_MM + [d, 0, 0]
    truth = mask_surface(ball(CENTRE_MM, r), AFFINE)
    pred = signed_distance_mm(mask_surface(ball(other, r), AFFINE), truth)
    expected = np.linalg.norm(pred.points - CENTRE_MM, axis=1) - r
    err = np.abs(pred[DISTANCE_ARRAY] - expected)
    assert np.percentile(err, 95) < 1.0  # half a voxel
    assert pred[DISTANCE_ARRAY].max() == pytest.approx(d, abs=1.0)
    assert pred[DISTANCE_ARRAY].min() == pytest.approx(-d, abs=1.0)
    # The over-segmented side is the side the prediction moved to (+x).
    ahead = pred.points[:, 0] > other[0] + r / 2
    assert (pred[DISTANCE_ARRAY][ahead] > 0).all()


def test_signed_distance_of_concentric_spheres_is_the_radius_gap() -> None:
    inner = mask_surface(ball(CENTRE_MM, 24.0), AFFINE)
    outer = mask_surface(ball(CENTRE_MM, 30.0), AFFINE)
    over = signed_distance_mm(outer, inner)[DISTANCE_ARRAY]
    under = signed_distance_mm(inner, outer)[DISTANCE_ARRAY]
    assert np.median(over) == pytest.approx(6.0, abs=1.0)
    assert np.median(under) == pytest.approx(-6.0, abs=1.0)
    assert over.min() > 4.5 and under.max() < -4.5


def test_error_meshes_hold_the_voxel_differences() -> None:
    truth = np.zeros(SHAPE, np.uint8)
    truth[ball(CENTRE_MM, 24.0)] = 2
    pred = np.zeros_like(truth)
    pred[ball(CENTRE_MM + [8.0, 0, 0], 24.0)] = 2
    e = error_meshes(pred, truth, AFFINE)
    voxel_mm3 = 8.0
    fp = (pred > 0) & (truth == 0)
    assert e["FP"].volume == pytest.approx(fp.sum() * voxel_mm3, rel=0.1)
    assert e["FP"].center[0] > CENTRE_MM[0] > e["FN"].center[0]
    with pytest.raises(GeometryError):
        error_meshes(pred[:-1], truth, AFFINE)


def test_brain_surface_is_coarse_closed_and_placed() -> None:
    img = np.where(ball(CENTRE_MM, 44.0), 300.0, 0.0)
    img[ball(CENTRE_MM, 8.0)] = 0  # an inner hole (ventricle) must not add a surface
    surf = brain_surface(img, AFFINE)
    assert surf.volume == pytest.approx(4 / 3 * np.pi * 44.0**3, rel=0.05)
    assert np.allclose(surf.center, CENTRE_MM, atol=1.5)
    assert surf.n_points < mask_surface(img > 0, AFFINE).n_points / 2


@pytest.mark.parametrize("suffix", [".vtp", ".stl", ".obj", ".ply", ".glb"])
def test_exported_meshes_load_back(tmp_path: Path, suffix: str) -> None:
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[6:24, 5:20, 8:22] = 4
    surf = region_meshes(lab, AFFINE, names=["ET"])["ET"]
    path = export_mesh(surf, tmp_path / f"et{suffix}", name="ET")
    back = pv.read(path)
    if isinstance(back, pv.MultiBlock):
        back = back.combine(merge_points=False)
    assert back.n_points == pytest.approx(surf.n_points, rel=0.01)
    assert back.n_cells == surf.n_cells
    assert not list(tmp_path.glob(".*tmp*"))  # atomic: no temporary left behind


def test_glb_holds_every_region_in_its_colour(tmp_path: Path) -> None:
    lab = np.zeros(SHAPE, np.uint8)
    lab[ball(CENTRE_MM, 20)] = 2
    lab[ball(CENTRE_MM, 10)] = 4
    meshes = region_meshes(lab, AFFINE)
    path = export_meshes(meshes, tmp_path / "case.glb")
    raw = path.read_bytes()
    assert raw[:4] == b"glTF"
    json_len = int.from_bytes(raw[12:16], "little")
    doc = json.loads(raw[20:20 + json_len])
    colours = {m["name"]: m["pbrMetallicRoughness"]["baseColorFactor"] for m in doc["materials"]}
    assert colours["ET"][:3] == pytest.approx(style.REGION_COLOURS["ET"].rgb_float)
    blocks = pv.read(path).combine(merge_points=False)
    assert blocks.n_cells == sum(m.n_cells for m in meshes.values())


def test_exported_truth_is_its_region_tint_and_translucent(tmp_path: Path) -> None:
    lab = np.zeros(SHAPE, np.uint8)
    lab[ball(CENTRE_MM, 12)] = 4
    pred = region_meshes(lab, AFFINE, names=["ET"])["ET"]
    scene = {"ET": pred, "truth_ET": pred.translate((3.0, 0.0, 0.0))}
    glb = export_meshes(scene, tmp_path / "case.glb").read_bytes()
    doc = json.loads(glb[20:20 + int.from_bytes(glb[12:16], "little")])
    looks = {m["name"]: (m["pbrMetallicRoughness"]["baseColorFactor"], m["alphaMode"])
             for m in doc["materials"]}
    truth_alpha = style.TRUTH_STYLES["translucent"].opacity
    # The paler tint of its region, as on screen: never the prediction's own colour.
    assert looks["truth_ET"][0] == pytest.approx([*style.TRUTH_COLOURS["ET"].rgb_float,
                                                  truth_alpha])
    assert style.TRUTH_COLOURS["ET"] != style.REGION_COLOURS["ET"]
    assert looks["truth_ET"][1] == "BLEND" and looks["ET"][1] == "OPAQUE"
    page = plotly_figure_of(export_meshes(scene, tmp_path / "case.html").read_text())
    traces = {t["name"]: t for t in page["data"]}
    assert traces["truth_ET"]["color"] == style.TRUTH_COLOURS["ET"].hex
    assert traces["truth_ET"]["opacity"] == pytest.approx(truth_alpha)
    assert traces["ET"]["opacity"] == 1.0


def plotly_figure_of(html: str) -> dict:
    """The figure JSON a plotly ``to_html`` page passes to ``Plotly.newPlot``."""
    decoder = json.JSONDecoder()
    args = html[html.index("Plotly.newPlot(") + len("Plotly.newPlot("):].lstrip()
    _div, end = decoder.raw_decode(args)
    data, _ = decoder.raw_decode(args[end:].lstrip().removeprefix(",").lstrip())
    return {"data": data}


def test_html_export_is_self_contained(tmp_path: Path) -> None:
    lab = np.zeros((30, 30, 30), np.uint8)
    lab[8:22, 8:22, 8:22] = 2
    path = export_meshes(region_meshes(lab, AFFINE, names=["WT"]), tmp_path / "case.html",
                         title="case 1", camera="axial")
    text = path.read_text()
    assert "<html" in text and "Plotly.newPlot" in text
    assert not re.search(r"<script[^>]+src=[\"']?https?:", text)
    assert '"name":"WT"' in text
    with pytest.raises(ConfigError, match="suffix must be one of"):
        export_mesh(pv.Sphere(), tmp_path / "x.fbx")


@pytest.mark.parametrize(
    "name", ["tumorscope.render.style", "tumorscope.render.mesh", "tumorscope.render.export",
             "tumorscope.render.plotly_scene"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
