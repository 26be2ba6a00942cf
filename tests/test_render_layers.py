"""One scene, two painters: the VTK PNG, the plotly view and the HTML export draw one layer list."""

from __future__ import annotations

import doctest
import json
import os
import subprocess
import sys
from dataclasses import replace

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pyvista as pv  # noqa: E402

from tumorscope.core.errors import ConfigError  # noqa: E402
from tumorscope.render import export, style  # noqa: E402
from tumorscope.render import layers as layers_module  # noqa: E402
from tumorscope.render.layers import (  # noqa: E402
    SHARED_WALL_MM,
    Layer,
    LesionMarker,
    SceneOptions,
    scene_layers,
)
from tumorscope.render.mesh import (  # noqa: E402
    DISTANCE_ARRAY,
    brain_surface,
    error_meshes,
    region_meshes,
)
from tumorscope.render.plotly_scene import layer_trace, layers_figure  # noqa: E402
from tumorscope.render.scene import paint_layers, screenshot  # noqa: E402

AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])
SHAPE = (48, 48, 40)
SIZE = (320, 240)


def _labels(shift_vox: int = 0) -> np.ndarray:
    """Edema ball around an enhancing shell around necrosis (ET is the rim of TC)."""
    idx = np.indices(SHAPE).astype(float)
    centre = np.array([24.0 + shift_vox, 24.0, 20.0])[:, None, None, None]
    r = np.sqrt(((idx - centre) ** 2).sum(0))
    lab = np.zeros(SHAPE, np.uint8)
    lab[r < 13] = 2
    lab[r < 8] = 4
    lab[r < 4] = 1
    return lab


@pytest.fixture(scope="module")
def case() -> dict:
    truth, pred = _labels(), _labels(shift_vox=3)
    idx = np.indices(SHAPE).astype(float)
    head = np.sqrt(((idx - np.array([24.0, 24.0, 20.0])[:, None, None, None]) ** 2).sum(0))
    return {"truth": region_meshes(truth, AFFINE), "prediction": region_meshes(pred, AFFINE),
            "brain": brain_surface((head < 19).astype(np.float32), AFFINE),
            "errors": error_meshes(pred, truth, AFFINE),
            "dice": {"WT": 0.81, "TC": 0.7, "ET": float("nan")}}


def _layers(case: dict, options: SceneOptions) -> tuple[Layer, ...]:
    return scene_layers(case["truth"], case["prediction"], brain=case["brain"],
                        errors=case["errors"], dice=case["dice"], options=options)


def _vtk_looks(layers: tuple[Layer, ...], options: SceneOptions) -> dict[str, dict]:
    """What the VTK painter drew, read back from its actors (per view, in drawing order)."""
    plotter = paint_layers(layers, options)
    try:
        image = screenshot(plotter, window_size=SIZE)
        assert image.reshape(-1, 3).std(0).min() > 5  # it painted something
        looks = {}
        for panel, renderer in enumerate(plotter.renderers):
            for name, actor in renderer.actors.items():
                if not isinstance(actor, pv.Actor):
                    continue  # legend, text, scalar bar
                mapper = actor.mapper
                look = {"panel": panel, "colour": tuple(actor.prop.color.float_rgb),
                        "opacity": actor.prop.opacity,
                        "representation": actor.prop.style.lower(), "scalars": None}
                if mapper.scalar_visibility and mapper.array_name:
                    lut = mapper.lookup_table
                    look["scalars"] = (mapper.array_name, tuple(mapper.scalar_range),
                                       tuple(lut.map_value(mapper.scalar_range[0])[:3]),
                                       tuple(lut.map_value(mapper.scalar_range[1])[:3]))
                looks[name] = look
        camera = plotter.renderers[0].camera
        looks["_camera"] = {"focal": np.asarray(camera.focal_point),
                            "direction": -np.asarray(camera.direction)}
        return looks
    finally:
        plotter.close()


def _rgb(text: str) -> tuple[float, float, float]:
    if text.startswith("#"):
        return tuple(int(text[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return tuple(float(v) / 255 for v in text[text.index("(") + 1:-1].split(","))


def _plotly_looks(data: list[dict], layout: dict) -> dict[str, dict]:
    """What the plotly painter drew, read back from the traces (plain JSON dicts)."""
    looks = {}
    for trace in data:
        points = trace.get("mode") == "markers"
        wireframe = trace["type"] == "scatter3d" and not points
        colour = (trace["marker"]["color"] if points else trace["line"]["color"] if wireframe
                  else trace.get("color", "#000000"))
        look = {"panel": 0 if trace.get("scene", "scene") == "scene" else 1,
                "colour": _rgb(colour), "opacity": trace["opacity"],
                "representation": "points" if points else "wireframe" if wireframe
                else "surface", "scalars": None}
        if "intensity" in trace:
            scale = trace["colorscale"]
            look["scalars"] = (trace["cmin"], trace["cmax"], _rgb(scale[0][1]),
                               _rgb(scale[-1][1]))
        looks[trace["meta"]] = look
    scene, camera = layout["scene"], layout["scene"]["camera"]
    box = np.array([scene[f"{a}axis"]["range"] for a in "xyz"])
    scale = np.ptp(box, axis=1).max()
    centre = np.array([camera["center"][a] for a in "xyz"])
    eye = np.array([camera["eye"][a] for a in "xyz"])
    looks["_camera"] = {"focal": box.mean(axis=1) + centre * scale, "direction": eye - centre}
    return looks


def _html_figure(html: bytes) -> tuple[list[dict], dict]:
    """The data and layout an exported page passes to ``Plotly.newPlot``."""
    text = html.decode("utf-8")
    decoder = json.JSONDecoder()
    args = text[text.index("Plotly.newPlot(") + len("Plotly.newPlot("):].lstrip()
    _div, end = decoder.raw_decode(args)
    rest = args[end:].lstrip().removeprefix(",").lstrip()
    data, end = decoder.raw_decode(rest)
    layout, _ = decoder.raw_decode(rest[end:].lstrip().removeprefix(",").lstrip())
    return data, layout


def _assert_agree(layers: tuple[Layer, ...], vtk: dict, plotly: dict) -> None:
    names = [layer.name for layer in layers]
    assert [n for n in vtk if n != "_camera"] == names
    assert [n for n in plotly if n != "_camera"] == names
    for layer in layers:
        a, b = vtk[layer.name], plotly[layer.name]
        assert a["panel"] == b["panel"] == layer.panel, layer.name
        assert a["representation"] == b["representation"] == layer.representation, layer.name
        assert a["opacity"] == pytest.approx(b["opacity"]) == layer.opacity, layer.name
        if layer.scalars is None:
            assert a["colour"] == pytest.approx(b["colour"], abs=1 / 255), layer.name
            assert a["colour"] == pytest.approx(layer.colour.rgb_float, abs=1 / 255)
            assert a["scalars"] is None and b["scalars"] is None
        else:
            name, vtk_range, vtk_low, vtk_high = a["scalars"]
            low, high, plotly_low, plotly_high = b["scalars"]
            assert name == layer.scalars and vtk_range == pytest.approx((low, high))
            assert (low, high) == pytest.approx(layer.clim)
            # The same colormap: its two ends agree (to rounding of the plotly stops).
            assert vtk_low == pytest.approx(plotly_low, abs=2 / 255)
            assert vtk_high == pytest.approx(plotly_high, abs=2 / 255)
    # The same camera: along the same preset, at the centre of the same framed layers.
    va, pa = vtk["_camera"], plotly["_camera"]
    np.testing.assert_allclose(va["direction"] / np.linalg.norm(va["direction"]),
                               pa["direction"] / np.linalg.norm(pa["direction"]), atol=1e-6)
    np.testing.assert_allclose(va["focal"], pa["focal"], atol=0.5)


@pytest.mark.parametrize("options", [
    SceneOptions(),
    SceneOptions(truth_style="translucent", regions=("TC", "ET"), camera="axial"),
    SceneOptions(colour_by="signed_distance", regions=("WT",), focus="brain"),
    SceneOptions(layout="side_by_side", camera="coronal", show_errors=False),
], ids=["default", "translucent", "distance", "side_by_side"])
def test_vtk_plotly_and_html_draw_the_same_layers(case: dict, options: SceneOptions) -> None:
    layers = _layers(case, options)
    assert {layer.role for layer in layers} >= {"truth", "prediction", "brain"}
    figure = layers_figure(layers, options)
    in_page = _plotly_looks([t.to_plotly_json() for t in figure.data],
                            figure.layout.to_plotly_json())
    vtk = _vtk_looks(layers, options)
    _assert_agree(layers, vtk, in_page)
    # The app's HTML download paints the page's figure, through the same layers.
    html = export.scene_html(case["truth"], case["prediction"], brain=case["brain"],
                             errors=case["errors"], dice=case["dice"], options=options)
    _assert_agree(layers, vtk, _plotly_looks(*_html_figure(html)))


def test_truth_opacity_changes_both_painters_alike(case: dict) -> None:
    looks = {}
    for opacity in (0.3, 0.8):
        options = SceneOptions(truth_opacity=opacity)
        layers = _layers(case, options)
        figure = layers_figure(layers, options)
        looks[opacity] = (_vtk_looks(layers, options),
                          _plotly_looks([t.to_plotly_json() for t in figure.data],
                                        figure.layout.to_plotly_json()))
    for vtk, plotly in looks.values():
        for painter in (vtk, plotly):
            assert [n for n in painter if n.startswith("truth")] == [
                "truth WT", "truth TC", "truth ET"]
    for name in ("truth WT", "truth TC", "truth ET"):
        for painter in (0, 1):
            assert looks[0.3][painter][name]["opacity"] == pytest.approx(0.3)
            assert looks[0.8][painter][name]["opacity"] == pytest.approx(0.8)
    for name in ("prediction WT", "prediction TC", "prediction ET", "brain"):
        for painter in (0, 1):
            assert looks[0.3][painter][name]["opacity"] == looks[0.8][painter][name]["opacity"]


def test_truth_is_drawn_apart_from_the_solid_prediction(case: dict) -> None:
    layers = {la.name: la for la in _layers(case, SceneOptions())}
    for region in ("WT", "TC", "ET"):
        truth, pred = layers[f"truth {region}"], layers[f"prediction {region}"]
        assert truth.representation == "wireframe" and pred.representation == "surface"
        assert truth.mesh.n_points < case["truth"][region].n_points  # a coarser cage
    assert layers["prediction ET"].opacity == 1.0
    # Seen alone, the ET prediction is solid yellow; the truth cage (see-through lines at
    # 0.55) reaches full-strength yellow only where lines cross: "truth only" != "both".
    def yellow_pixels(**switches: bool) -> int:
        options = SceneOptions(regions=("ET",), camera="axial", show_brain=False,
                               show_errors=False, **switches)
        plotter = paint_layers(_layers(case, options), options)
        try:
            img = screenshot(plotter, window_size=SIZE).astype(int)
        finally:
            plotter.close()
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        return int(((r > 180) & (g > 150) & (b < 80)).sum())

    solid, cage = yellow_pixels(show_truth=False), yellow_pixels(show_prediction=False)
    assert solid > 2000 and cage < solid / 3


def test_nested_surfaces_are_see_through_and_never_share_a_wall(case: dict) -> None:
    from scipy.spatial import cKDTree

    layers = {la.name: la for la in _layers(case, SceneOptions())}
    assert layers["prediction WT"].opacity == style.NESTED_OPACITY["WT"]
    assert layers["prediction TC"].opacity == style.NESTED_OPACITY["TC"]
    # Enhancing rim over the left half of the core only; necrosis meets the edema on the
    # right. Where TC's wall is ET's, only ET is drawn (nothing left to z-fight); the
    # necrotic half of TC stays; WT, apart from both, is drawn whole.
    idx = np.indices(SHAPE).astype(float)
    r = np.sqrt(((idx - np.array([24.0, 24.0, 20.0])[:, None, None, None]) ** 2).sum(0))
    lab = np.zeros(SHAPE, np.uint8)
    lab[r < 13] = 2
    lab[r < 8] = 1
    lab[(r < 8) & (r >= 5) & (idx[0] < 24)] = 4
    meshes = region_meshes(lab, AFFINE)
    drawn = {la.name: la for la in scene_layers(None, meshes)}
    tc = drawn["prediction TC"].mesh
    faces = tc.regular_faces
    near = cKDTree(meshes["ET"].points).query(tc.points)[0]
    assert not (near[faces] <= SHARED_WALL_MM).all(axis=1).any()
    centres = tc.points[faces].mean(axis=1)
    assert 0 < len(faces) < meshes["TC"].n_cells
    assert (centres[:, 0] > 22).all() and (centres[:, 0] > 26).any()  # the necrotic half
    assert drawn["prediction WT"].mesh.n_cells == meshes["WT"].n_cells
    assert drawn["prediction ET"].mesh is meshes["ET"]  # innermost: as given
    assert meshes["TC"].n_cells == region_meshes(lab, AFFINE)["TC"].n_cells  # untouched
    # A TC whose whole wall is ET's (this module's case): kept whole, a voxel behind ET,
    # so it shows when ET is hidden; the cached mesh is not moved.
    source = case["prediction"]["TC"]
    whole = layers["prediction TC"].mesh
    moved = np.linalg.norm(whole.points - source.points, axis=1)
    assert whole.n_cells == source.n_cells and moved == pytest.approx(SHARED_WALL_MM, abs=1e-4)
    assert not np.shares_memory(whole.points, source.points)
    # Only what is drawn nests: WT alone is solid and left in place.
    alone = scene_layers(None, case["prediction"], options=SceneOptions(regions=("WT",)))
    assert alone[0].opacity == 1.0 and alone[0].mesh is case["prediction"]["WT"]


def test_distance_colouring_reads_missing_truth_as_outside(case: dict) -> None:
    truth = {"WT": case["truth"]["WT"]}  # no TC or ET in the truth
    layers = scene_layers(truth, case["prediction"],
                          options=SceneOptions(colour_by="signed_distance"))
    pred = {la.region: la for la in layers if la.role == "prediction"}
    et = np.asarray(pred["ET"].mesh.point_data[DISTANCE_ARRAY])
    assert np.all(et == style.DISTANCE_CLIM_MM)
    assert np.isfinite(pred["WT"].mesh.point_data[DISTANCE_ARRAY]).all()
    assert [la.colour_bar is not None for la in pred.values()] == [True, False, False]
    assert DISTANCE_ARRAY not in case["prediction"]["ET"].point_data  # input untouched
    truth_layer = next(la for la in layers if la.role == "truth")
    assert truth_layer.colour == style.TRUTH_NEUTRAL_COLOUR


def test_simplified_export_surfaces_keep_their_distances(case: dict) -> None:
    options = SceneOptions(colour_by="signed_distance", regions=("WT",), show_truth=False)
    layer = next(la for la in _layers(case, options) if la.scalars)
    full = layer_trace(layer)
    light = layer_trace(layer, max_triangles=layer.mesh.n_cells // 8)
    assert len(light.i) < len(full.i) / 4
    assert np.isfinite(light.intensity).all() and len(light.intensity) == len(light.x)
    assert np.ptp(light.intensity) > 0.5 * np.ptp(full.intensity)


def test_switches_leave_layers_out_and_legend_follows(case: dict) -> None:
    options = SceneOptions(show_truth=False, show_brain=False, show_errors=False,
                           legend=False)
    layers = _layers(case, options)
    assert [la.role for la in layers] == ["prediction"] * 3
    figure = layers_figure(layers, options)
    assert figure.layout.showlegend is False
    assert [la.legend for la in layers] == ["prediction WT · Dice 0.81",
                                            "prediction TC · Dice 0.70", "prediction ET"]
    empty = scene_layers({}, None, brain=pv.PolyData(), options=SceneOptions())
    assert empty == ()
    assert len(layers_figure(empty).data) == 0


def _lesions() -> list[LesionMarker]:
    """A miss beside the tumour, two false positives, a match (not marked by default)."""
    common = {"scoring": "brats2023", "dice": 0.0}
    return [LesionMarker(region="WT", lesion=2, status="FN", centroid_mm=(40.0, 24.0, 20.0),
                         volume_ml=0.3, **common),
            LesionMarker(region="WT", lesion=5, status="FP", centroid_mm=(10.0, 30.0, 20.0),
                         volume_ml=0.02, **common),
            LesionMarker(region="ET", lesion=1, status="FP", centroid_mm=(12.0, 12.0, 18.0),
                         volume_ml=0.05, **common),
            LesionMarker(region="WT", lesion=1, status="TP", centroid_mm=(24.0, 24.0, 20.0),
                         volume_ml=7.0, scoring="brats2023", dice=0.8)]


def test_lesion_markers_and_aim_agree_in_both_painters(case: dict) -> None:
    lesions = _lesions()
    miss = lesions[0]
    options = SceneOptions(selected_lesion=miss.key, target_mm=miss.centroid_mm,
                           target_radius_mm=15.0)
    layers = scene_layers(case["truth"], case["prediction"], brain=case["brain"],
                          lesions=lesions, options=options)
    marks = {la.name: la for la in layers if la.role == "lesion"}
    assert list(marks) == ["lesions FN", "lesions FP", "selected lesion"]  # TP not marked
    assert [la.name for la in layers][-3:] == list(marks)  # drawn last, over the surfaces
    assert marks["lesions FP"].mesh.n_points == 2 and marks["lesions FN"].mesh.n_points == 1
    assert marks["lesions FN"].colour == style.LESION_STATUS_COLOURS["FN"]
    assert marks["lesions FP"].colour == style.ERROR_COLOURS["FP"]  # one red for "too much"
    assert marks["lesions FP"].hover == ("ET lesion 1 · FP · 0.05 mL · Dice 0.00",
                                         "WT lesion 5 · FP · 0.02 mL · Dice 0.00")
    assert not any(la.fit for la in marks.values())
    figure = layers_figure(layers, options)
    in_page = _plotly_looks([t.to_plotly_json() for t in figure.data],
                            figure.layout.to_plotly_json())
    vtk = _vtk_looks(layers, options)
    _assert_agree(layers, vtk, in_page)
    # Both cameras look at the chosen lesion, along the preset.
    np.testing.assert_allclose(in_page["_camera"]["focal"], miss.centroid_mm, atol=0.5)
    np.testing.assert_allclose(vtk["_camera"]["focal"], miss.centroid_mm, atol=0.5)
    fn = next(t for t in figure.data if t.meta == "lesions FN")
    assert fn.mode == "markers" and fn.marker.symbol == style.LESION_MARKER_SYMBOLS["FN"]
    assert list(fn.text) == [miss.hover] and fn.hoverinfo == "text"


def test_lesion_markers_follow_regions_switch_and_cap(case: dict,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    only_et = scene_layers(None, None, lesions=_lesions(), options=SceneOptions(regions=("ET",)))
    assert [(la.name, la.mesh.n_points) for la in only_et] == [("lesions FP", 1)]
    assert scene_layers(None, None, lesions=_lesions(),
                        options=SceneOptions(show_lesions=False)) == ()
    every = scene_layers(None, None, lesions=_lesions(),
                         options=SceneOptions(lesion_statuses=("TP",)))
    assert [la.name for la in every] == ["lesions TP"]
    side = scene_layers(None, None, lesions=_lesions(),
                        options=SceneOptions(layout="side_by_side"))
    assert {la.name: la.panel for la in side} == {"lesions FN": 0, "lesions FP": 1}
    monkeypatch.setattr(style, "MAX_LESION_MARKERS", 1)
    capped = scene_layers(None, None, lesions=_lesions())
    fp = next(la for la in capped if la.name == "lesions FP")
    assert fp.mesh.n_points == 1 and fp.hover[0].startswith("ET lesion 1")  # the largest
    assert fp.legend == "false-positive lesion (FP) · 2, largest 1 shown"


@pytest.mark.parametrize("kwargs, message", [
    ({"status": "XX"}, "lesion status must be one of"),
    ({"region": "NCR"}, "lesion region must be one of"),
    ({"centroid_mm": (1.0, float("nan"), 0.0)}, "centroid_mm must be three finite"),
])
def test_lesion_markers_are_checked(kwargs: dict, message: str) -> None:
    good = {"scoring": "brats2023", "region": "WT", "lesion": 1, "status": "FN",
            "centroid_mm": (0.0, 0.0, 0.0), "volume_ml": 1.0}
    with pytest.raises(ConfigError, match=message):
        LesionMarker(**{**good, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    ({"camera": "top"}, r"camera must be one of \['axial'.*got 'top'"),
    ({"colour_by": "dice"}, "colour_by must be one of"),
    ({"regions": ("WT", "XX")}, "shown region must be one of"),
    ({"truth_opacity": 1.5}, r"truth_opacity must be in \(0, 1\], got 1.5"),
    ({"prediction_opacity": float("nan")}, "prediction_opacity must be in"),
    ({"distance_clim_mm": 0}, "distance_clim_mm must be > 0"),
    ({"window_size": (0, 10)}, "window_size width must be a pixel count"),
    ({"legend": "yes"}, "legend must be true or false"),
    ({"target_mm": (1.0, 2.0)}, "target_mm must be three finite numbers"),
    ({"target_radius_mm": 0}, "target_radius_mm must be > 0"),
    ({"lesion_statuses": ("FN", "XX")}, "lesion status must be one of"),
    ({"show_lesions": "no"}, "show_lesions must be true or false"),
])
def test_options_are_checked_on_entry(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SceneOptions(**kwargs)


def test_options_are_one_frozen_value() -> None:
    options = SceneOptions(regions=["ET", "WT", "ET"], truth_opacity=1)
    assert options.regions == ("WT", "ET") and options.truth_opacity == 1.0
    with pytest.raises(AttributeError):
        options.camera = "axial"  # type: ignore[misc]
    assert replace(options, camera="axial").camera == "axial"
    with pytest.raises(ConfigError):
        replace(options, camera="top")
    with pytest.raises(ConfigError, match="errors key"):
        scene_layers({}, None, errors={"XX": pv.Sphere()})


def test_the_scene_description_imports_no_drawing_library() -> None:
    code = ("import sys; import tumorscope.render.layers; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'vtk', 'vtkmodules', "
            "'pyvista', 'plotly'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_docstring_examples() -> None:
    result = doctest.testmod(layers_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
