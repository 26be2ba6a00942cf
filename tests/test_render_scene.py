"""The comparison scene off-screen: colours in the right places, presets, PNG output."""

from __future__ import annotations

import doctest
import os
from pathlib import Path

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pyvista as pv  # noqa: E402
from PIL import Image  # noqa: E402

from tumorscope.core.errors import ConfigError  # noqa: E402
from tumorscope.render import scene as scene_module  # noqa: E402
from tumorscope.render import style  # noqa: E402
from tumorscope.render.layers import LesionMarker, SceneOptions  # noqa: E402
from tumorscope.render.mesh import brain_surface, error_meshes, region_meshes  # noqa: E402
from tumorscope.render.scene import (  # noqa: E402
    CAMERA_PRESETS,
    comparison_scene,
    save_png,
    screenshot,
)

# BraTS-like affine: x and y flipped, 1 mm (world = RAS+ mm).
AFFINE = np.array([[-1.0, 0, 0, 60.0], [0, -1.0, 0, 60.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])
SHAPE = (60, 60, 44)
SIZE = (320, 240)


def _world() -> np.ndarray:
    idx = np.indices(SHAPE, dtype=np.float64).reshape(3, -1)
    return (AFFINE[:3, :3] @ idx + AFFINE[:3, 3:4]).reshape(3, *SHAPE)


def _ball(centre_mm, radius_mm) -> np.ndarray:
    c = np.asarray(centre_mm, dtype=float)[:, None, None, None]
    return np.sqrt(((_world() - c) ** 2).sum(0)) <= radius_mm


CENTRE = np.array([30.0, 30.0, 22.0])  # world mm; index (30, 30, 22)


def tumour(shift_mm=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Edema ball; an enhancing lobe to the patient's right (+x), necrosis inside it."""
    c = CENTRE + np.asarray(shift_mm)
    lab = np.zeros(SHAPE, np.uint8)
    lab[_ball(c, 14)] = 2
    lab[_ball(c + [9, 0, 0], 7)] = 4
    lab[_ball(c + [9, 0, 0], 3)] = 1
    return lab


@pytest.fixture(scope="module")
def case() -> dict:
    truth = region_meshes(tumour(), AFFINE)
    pred = region_meshes(tumour((0.0, 4.0, 0.0)), AFFINE)
    brain = brain_surface(np.where(_ball(CENTRE, 27), 100.0, 0.0), AFFINE)
    return {"truth": truth, "pred": pred, "brain": brain}


def _yellow(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (r > 150) & (g > 140) & (b < 100) & (abs(r - g) < 70)


def _shot(case: dict, **kwargs) -> np.ndarray:
    """Screenshot of the case's scene; ``brain`` and ``dice`` are scene data, the rest
    :class:`SceneOptions`."""
    brain, dice = kwargs.pop("brain", case["brain"]), kwargs.pop("dice", None)
    plotter = comparison_scene(case["truth"], case["pred"], brain=brain, dice=dice,
                               options=SceneOptions(**kwargs))
    try:
        return screenshot(plotter, window_size=SIZE)
    finally:
        plotter.close()


def test_screenshot_is_non_blank_and_sized(case: dict) -> None:
    img = _shot(case, dice={"WT": 0.9, "TC": 0.8, "ET": 0.7})
    assert img.shape == (SIZE[1], SIZE[0], 3) and img.dtype == np.uint8
    assert img.reshape(-1, 3).std(0).min() > 10


def test_enhancing_tumour_is_yellow_when_shown_and_absent_when_hidden(case: dict) -> None:
    shown = _shot(case, camera="axial")
    hidden = _shot(case, camera="axial", regions=["WT", "TC"])
    assert _yellow(shown).sum() > 200
    assert _yellow(hidden).sum() == 0


# Radiological convention: axial seen from the feet and coronal from the front put the
# patient's right on the screen's left.
@pytest.mark.parametrize("camera", ["axial", "coronal"])
def test_right_sided_lobe_appears_on_screen_left(case: dict, camera: str) -> None:
    img = _shot(case, camera=camera, regions=["ET"], focus="brain")  # brain centred on ball
    cols = np.nonzero(_yellow(img))[1]
    assert cols.size > 100
    assert cols.mean() < SIZE[0] / 2 - 5


def test_presets_differ_and_are_validated(case: dict) -> None:
    images = {c: _shot(case, camera=c) for c in CAMERA_PRESETS}
    for a in CAMERA_PRESETS:
        for b in CAMERA_PRESETS:
            if a < b:
                diff = np.abs(images[a].astype(int) - images[b].astype(int)).mean()
                assert diff > 2, (a, b)
    with pytest.raises(ConfigError, match=r"camera must be one of \['axial'.*got 'top'"):
        comparison_scene(case["truth"], case["pred"], options=SceneOptions(camera="top"))
    with pytest.raises(ConfigError, match="colour_by"):
        comparison_scene(case["truth"], case["pred"], options=SceneOptions(colour_by="dice"))


# The prediction is the truth moved 4 mm anterior: over-segmented (red) in front, under-
# segmented (blue) behind. Anterior is up in the axial view, left in the sagittal one.
@pytest.mark.parametrize("camera, axis", [("axial", 0), ("sagittal", 1)])
def test_signed_distance_mode_shows_over_and_under_segmentation(
    case: dict, camera: str, axis: int
) -> None:
    img = _shot(case, colour_by="signed_distance", regions=["WT"], camera=camera, brain=None)
    r, g, b = (img[..., i].astype(int) for i in range(3))
    red = (r > 150) & (r - b > 60) & (r - g > 40)
    blue = (b > 150) & (b - r > 60)
    assert red.sum() > 100 and blue.sum() > 100
    assert np.nonzero(red)[axis].mean() < np.nonzero(blue)[axis].mean() - 10


def test_errors_and_side_by_side(case: dict) -> None:
    e = error_meshes(tumour((0.0, 4.0, 0.0)), tumour(), AFFINE)
    plotter = comparison_scene(case["truth"], None, errors=e,
                               options=SceneOptions(regions=["WT"]))
    img = screenshot(plotter, window_size=SIZE)
    plotter.close()
    r, b = img[..., 0].astype(int), img[..., 2].astype(int)
    assert ((r > 150) & (r - b > 80)).sum() > 50 and ((b > 150) & (b - r > 80)).sum() > 50

    img = _shot(case, layout="side_by_side")
    left, right = img[:, : SIZE[0] // 2], img[:, SIZE[0] // 2:]
    assert _yellow(left).sum() > 20 and _yellow(right).sum() > 20


def test_opacity_options_reach_the_surfaces(case: dict) -> None:
    def surface_opacities(**kwargs) -> list[float]:
        plotter = comparison_scene(case["truth"], case["pred"],
                                   options=SceneOptions(truth_style="translucent", **kwargs))
        try:
            return [round(a.prop.opacity, 3) for a in plotter.actors.values()
                    if isinstance(a, pv.Actor)]
        finally:
            plotter.close()

    # Prediction first, then truth; nested WT/TC/ET keep their layering under the scale.
    assert surface_opacities(regions=["ET"], truth_opacity=0.6, prediction_opacity=0.5) == [
        0.5, 0.6]
    assert surface_opacities(regions=["WT", "ET"], prediction_opacity=0.5)[:2] == [
        round(0.5 * style.NESTED_OPACITY["WT"], 3), 0.5]
    prediction_only = {**case, "truth": None, "brain": None}
    solid = _shot(prediction_only, regions=["ET"], camera="axial")
    faded = _shot(prediction_only, regions=["ET"], camera="axial", prediction_opacity=0.25)
    assert _yellow(solid).sum() > 200 and _yellow(faded).sum() < _yellow(solid).sum() / 4
    with pytest.raises(ConfigError, match=r"prediction_opacity must be in \(0, 1\], got 0"):
        comparison_scene(case["truth"], case["pred"],
                         options=SceneOptions(prediction_opacity=0))


def _cyan(img: np.ndarray) -> np.ndarray:
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (g > 150) & (b > 150) & (r < 90)


def _azure(img: np.ndarray) -> np.ndarray:
    """The FN marker's blue (style.LESION_STATUS_COLOURS["FN"]), lit."""
    r, g, b = (img[..., i].astype(int) for i in range(3))
    return (b > 150) & (b - r > 90) & (b - g > 40)


def test_lesion_markers_show_and_the_camera_aims_at_the_chosen_one(case: dict) -> None:
    """A missed lesion 24 mm to the patient's left of the tumour: a blue marker there;
    chosen, the view centres on it (cyan ring in the middle of the image)."""
    miss = LesionMarker(scoring="brats2023", region="WT", lesion=4, status="FN",
                        centroid_mm=(CENTRE[0] - 24.0, CENTRE[1], CENTRE[2]), volume_ml=0.2,
                        dice=0.0)

    def shot(**kwargs) -> np.ndarray:
        plotter = comparison_scene(case["truth"], case["pred"], lesions=[miss],
                                   options=SceneOptions(camera="axial", **kwargs))
        try:
            return screenshot(plotter, window_size=SIZE)
        finally:
            plotter.close()

    shown, hidden = shot(), shot(show_lesions=False)
    assert _azure(shown).sum() > 10 and _azure(hidden).sum() == 0
    # Axial is seen from the feet: the patient's left (lower x in RAS+) is on screen right.
    assert np.nonzero(_azure(shown))[1].mean() > SIZE[0] / 2
    aimed = shot(selected_lesion=miss.key, target_mm=miss.centroid_mm, target_radius_mm=15.0,
                 legend=False)  # the legend names the selection in cyan too
    rows, cols = np.nonzero(_cyan(aimed))
    assert rows.size > 20
    assert abs(rows.mean() - SIZE[1] / 2) < 12 and abs(cols.mean() - SIZE[0] / 2) < 12


def test_transparent_background_and_png(case: dict, tmp_path: Path) -> None:
    plotter = comparison_scene(case["truth"], case["pred"], brain=None)
    rgba = screenshot(plotter, camera="sagittal", window_size=SIZE,
                      transparent_background=True)
    plotter.close()
    assert rgba.shape == (SIZE[1], SIZE[0], 4)
    corners = rgba[[0, 0, -1, -1], [0, -1, 0, -1], 3]
    assert (corners == 0).all()
    assert (rgba[..., 3] == 255).sum() > 500

    path = save_png(tmp_path / "shots" / "case.png", rgba)
    back = np.asarray(Image.open(path))
    assert np.array_equal(back, rgba)
    assert [p.name for p in path.parent.iterdir()] == ["case.png"]


def test_empty_scene_still_renders() -> None:
    plotter = comparison_scene({}, None, dice={"WT": float("nan")})
    img = screenshot(plotter, window_size=(160, 120), camera="axial")
    plotter.close()
    assert img.shape == (120, 160, 3)


def test_docstring_example() -> None:
    result = doctest.testmod(scene_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("size", [(0, 240), (320, -1), (100_000, 100_000), (15, 240),
                                  (320, 8193), (320.5, 240), (True, 240), (320,)])
def test_window_size_out_of_range_is_refused_before_drawing(case: dict, size: tuple) -> None:
    # 100000 x 100000 aborts VTK natively and a negative width draws garbage: refuse both.
    with pytest.raises(ConfigError, match=r"window_size"):
        comparison_scene(case["truth"], case["pred"], options=SceneOptions(window_size=size))
    plotter = comparison_scene(case["truth"], case["pred"],
                               options=SceneOptions(window_size=SIZE))
    try:
        with pytest.raises(ConfigError, match=r"16\.\.8192|\(width, height\)"):
            screenshot(plotter, window_size=size)
    finally:
        plotter.close()


def test_window_size_limits_are_accepted() -> None:
    assert scene_module.check_window_size((16, 8192)) == (16, 8192)
    assert scene_module.check_pixels("--width", np.int64(640)) == 640

