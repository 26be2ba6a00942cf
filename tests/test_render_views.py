"""What a person sees in the 3-D scene: truth told from prediction, no z-fighting colours,
orientation letters apart, the legend beside the scene, the slice crosshair, clicks."""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pyvista as pv  # noqa: E402

from tumorscope.render import style  # noqa: E402
from tumorscope.render.layers import (  # noqa: E402
    CAMERA_PRESETS,
    SceneOptions,
    picked_point,
    scene_layers,
)
from tumorscope.render.mesh import region_meshes  # noqa: E402
from tumorscope.render.plotly_scene import layers_figure, scene_point_mm  # noqa: E402
from tumorscope.render.scene import paint_layers, screenshot  # noqa: E402

SHAPE = (48, 48, 40)
SIZE = (320, 240)


@pytest.fixture(scope="module")
def meshes() -> dict:
    """Edema ball around an enhancing shell around necrosis (ET is the rim of TC)."""
    idx = np.indices(SHAPE).astype(float)
    r = np.sqrt(((idx - np.array([24.0, 24.0, 20.0])[:, None, None, None]) ** 2).sum(0))
    lab = np.zeros(SHAPE, np.uint8)
    lab[r < 13] = 2
    lab[r < 8] = 4
    lab[r < 4] = 1
    return region_meshes(lab, np.eye(4))


def _vtk_image(meshes: dict, **switches: object) -> np.ndarray:
    options = SceneOptions(camera="axial", show_brain=False, **switches)
    truth = meshes if options.show_truth else None
    plotter = paint_layers(scene_layers(truth, meshes, options=options), options)
    try:
        return screenshot(plotter, window_size=SIZE).astype(int)
    finally:
        plotter.close()


def _share_near(image: np.ndarray, colour: style.Colour, tolerance: int = 40) -> float:
    return float((np.abs(image - np.array(colour.rgb)).max(axis=-1) < tolerance).mean())


def test_truth_never_takes_the_colour_of_the_prediction(meshes: dict) -> None:
    """Truth alone and truth with the prediction look different: the solid prediction's
    saturated hue appears only where the prediction is drawn, the truth's pale one only
    where the truth is."""
    layers = {la.name: la for la in scene_layers(meshes, meshes)}
    for region in ("WT", "TC", "ET"):
        truth, pred = layers[f"truth {region}"], layers[f"prediction {region}"]
        assert truth.colour == style.TRUTH_COLOURS[region] != pred.colour
    gold, pale = style.REGION_COLOURS["ET"], style.TRUTH_COLOURS["ET"]
    solid = _vtk_image(meshes, regions=("ET",), show_truth=False)
    cage = _vtk_image(meshes, regions=("ET",), show_prediction=False, truth_opacity=1.0)
    assert _share_near(solid, gold) > 0.02
    assert _share_near(cage, gold) < 0.02 * _share_near(solid, gold)
    assert _share_near(cage, pale) > 0.005 > _share_near(solid, pale)


def test_where_tc_and_et_meet_only_et_is_painted() -> None:
    """ET is TC's rim: their walls coincide, smoothed apart by a fraction of a voxel either
    way (here a +-0.4 mm ripple), so they cross. Seen from outside the core must be ET
    yellow, not yellow with orange patches where the see-through TC pokes out (z-fight)."""
    et = pv.Sphere(radius=8.0, theta_resolution=80, phi_resolution=80)
    tc = et.copy()
    normal = np.asarray(tc.points) / 8.0
    ripple = 0.4 * np.sin(5 * np.arctan2(normal[:, 1], normal[:, 0])) \
        * np.sin(5 * np.arccos(np.clip(normal[:, 2], -1.0, 1.0)))
    tc.points = np.asarray(tc.points) + normal * ripple[:, None]
    image = _vtk_image({"TC": tc, "ET": et}, regions=("TC", "ET"), show_truth=False)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    tumour = (r > 150) & (b < 90)
    orange = tumour & (g < 0.65 * r)
    assert tumour.sum() > 3000 and orange.sum() < 0.01 * tumour.sum()


def _screen(figure_layout: dict, scene: str = "scene") -> list[tuple[str, float, float]]:
    """Each 3-D letter's place on screen (tangent units of the view: 0.41 is the top edge of
    plotly's 45-degree view), projected through the scene's camera."""
    layout = figure_layout[scene]
    box = np.array([layout[f"{a}axis"]["range"] for a in "xyz"])
    aspect = layout["aspectratio"]
    camera = layout["camera"]
    eye = np.array([camera["eye"][a] for a in "xyz"])
    centre = np.array([camera["center"][a] for a in "xyz"])
    up = np.array([camera["up"][a] for a in "xyz"])
    forward = (centre - eye) / np.linalg.norm(centre - eye)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    top = np.cross(right, forward)
    scale = np.ptp(box, axis=1) / np.array([aspect[a] for a in "xyz"])
    placed = []
    for note in layout.get("annotations", ()):
        world = np.array([note[a] for a in "xyz"])
        v = (world - box.mean(axis=1)) / scale - eye
        depth = v @ forward
        placed.append((note["text"], v @ right / depth, v @ top / depth))
    return placed


@pytest.mark.parametrize("camera", CAMERA_PRESETS)
def test_orientation_letters_stay_apart_and_in_view(meshes: dict, camera: str) -> None:
    options = SceneOptions(camera=camera)
    layout = layers_figure(scene_layers(meshes, meshes, options=options),
                           options).layout.to_plotly_json()
    letters = _screen(layout)
    # In the scene, so they turn with it; the four across an axis-aligned view at least.
    assert len(letters) == (6 if camera == "oblique" else 4)
    for i, (a, ax, ay) in enumerate(letters):
        assert abs(ay) < 0.39, f"{a} is off the top or bottom of the {camera} view"
        for b, bx, by in letters[i + 1:]:
            assert np.hypot(ax - bx, ay - by) > 0.08, f"{a} and {b} overlap ({camera})"


def test_the_legend_sits_under_the_scene_not_on_it(meshes: dict) -> None:
    for layout_ in ("overlay", "side_by_side"):
        options = SceneOptions(layout=layout_)
        figure = layers_figure(scene_layers(meshes, meshes, options=options), options)
        legend = figure.layout.legend
        assert legend.orientation == "h" and legend.y <= 0 and legend.yanchor == "top"
        layout = figure.layout.to_plotly_json()
        scenes = [k for k in layout if k.startswith("scene")]
        assert len(scenes) == (2 if layout_ == "side_by_side" else 1)
        assert all(layout[k]["domain"]["y"][0] >= 0 for k in scenes)  # legend below y=0


def test_the_slice_crosshair_crosses_at_its_point_in_both_painters(meshes: dict) -> None:
    point = (20.0, 26.0, 18.0)
    options = SceneOptions(crosshair_mm=point, camera="axial", show_brain=False)
    layers = scene_layers(meshes, meshes, options=options)
    (cross,) = [la for la in layers if la.role == "crosshair"]
    arms = np.asarray(cross.mesh.points).reshape(2, 3, 3)
    for axis in range(3):  # each arm runs along one axis through the point, past the tumour
        low, high = arms[0, axis], arms[1, axis]
        others = [a for a in range(3) if a != axis]
        np.testing.assert_allclose(low[others], np.array(point)[others])
        assert low[axis] < meshes["WT"].bounds[2 * axis] < point[axis] \
            < meshes["WT"].bounds[2 * axis + 1] < high[axis]
    assert cross.colour == style.CROSSHAIR_COLOUR and not cross.fit
    trace = next(t for t in layers_figure(layers, options).data if t.meta == "crosshair")
    assert trace.type == "scatter3d" and trace.line.color == style.CROSSHAIR_COLOUR.hex
    assert np.count_nonzero(~np.isnan(np.asarray(trace.x, dtype=float))) == 6
    # VTK draws the cyan lines over the tumour too (they stick out of it).
    plotter = paint_layers(layers, options)
    try:
        image = screenshot(plotter, window_size=SIZE).astype(int)
    finally:
        plotter.close()
    assert _share_near(image, style.CROSSHAIR_COLOUR, 60) > 0.002
    side = scene_layers(meshes, meshes, options=SceneOptions(crosshair_mm=point,
                                                             layout="side_by_side"))
    assert sorted(la.panel for la in side if la.role == "crosshair") == [0, 1]


def test_a_click_looks_through_the_brain_to_the_tumour() -> None:
    """Plotly picks the nearest surface, the faint brain around everything: the point
    meant is the first opaque tumour surface along the same line of sight."""
    brain = pv.Sphere(radius=60.0, theta_resolution=60, phi_resolution=60)
    tumour = pv.Sphere(radius=10.0, center=(5.0, 0.0, 0.0))
    wt = pv.Sphere(radius=20.0, center=(5.0, 0.0, 0.0))
    layers = scene_layers({"WT": wt, "ET": tumour}, {"WT": wt, "ET": tumour}, brain=brain)
    eye = np.array([5.0, 0.0, 300.0])
    name, point = picked_point(layers, eye, (5.0, 0.0, 60.0))  # plotly picked the brain
    assert name == "prediction ET"  # through the see-through brain and WT
    np.testing.assert_allclose(point, (5.0, 0.0, 10.0), atol=0.2)
    assert picked_point(layers, eye, (45.0, 0.0, 40.0)) is None  # beside the tumour


def test_scene_units_turn_back_into_world_mm(meshes: dict) -> None:
    options = SceneOptions(camera="sagittal")
    figure = layers_figure(scene_layers(meshes, meshes, options=options), options)
    scene = figure.layout.scene
    ranges = [scene.xaxis.range, scene.yaxis.range, scene.zaxis.range]
    aspect = {a: scene.aspectratio[a] for a in "xyz"}
    centre = scene_point_mm(scene.camera.center.to_plotly_json(), ranges, aspect)
    eye = scene_point_mm(scene.camera.eye.to_plotly_json(), ranges, aspect)
    box = np.asarray(meshes["WT"].bounds).reshape(3, 2)  # what the camera frames here
    np.testing.assert_allclose(centre, box.mean(axis=1), atol=0.5)
    direction = (eye - centre) / np.linalg.norm(eye - centre)
    np.testing.assert_allclose(direction, (-1.0, 0.0, 0.0), atol=1e-6)  # from the left
