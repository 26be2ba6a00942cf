"""The browser-drawn slice views: the code maps they paint equal the server's, the blobs hold
what they say, and in a real Streamlit session a view's own steps move the sliders while
its slice is taken from Python only when something else moved it."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_slice_viewer import APP, SHAPE, TIMEOUT_S, build_heat_run, canvas_args, ok, position

from tumorscope.app import slice_canvas
from tumorscope.render import slices
from tumorscope.render.overlay_codes import OVERLAYS, overlay_codes, paint_codes
from tumorscope.render.slices import _resize


def labels(seed: int, shape: tuple[int, int, int] = (18, 20, 12)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.uint8)
    for value, size in ((2, 7), (1, 4), (4, 2)):
        for _ in range(3):
            c = [int(rng.integers(size // 2 + 1, n - size // 2 - 1)) for n in shape]
            out[tuple(slice(v - size // 2 - 1, v + size // 2 + 1) for v in c)] = value
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("style", ["filled", "outline"])
def test_volume_codes_paint_every_plane_as_the_plane_codes_do(overlay: str,
                                                              style: str) -> None:
    pred, truth, pred_b = labels(0), labels(1), labels(2)
    grey = np.random.default_rng(3).integers(0, 256, pred.shape).astype(np.float32)
    for view in slices.VIEWS:
        whole = overlay_codes(pred, truth, pred_b, overlay=overlay, overlay_style=style,
                              alpha=0.4, region="TC", axes=slices.VIEW_AXES[view][1:])
        for index in range(pred.shape[slices.AXIS_OF_VIEW[view]]):
            planes = [slices.slice_2d(v, view, index) for v in (pred, truth, pred_b)]
            plane = overlay_codes(*planes, overlay=overlay, overlay_style=style, alpha=0.4,
                                  region="TC")
            cut = type(whole)(slices.slice_2d(whole.codes, view, index), whole.palette,
                              whole.per_plane)
            expected = np.repeat(slices.slice_2d(grey, view, index)[..., None], 3, axis=2)
            got = expected.copy()
            paint_codes(expected, plane)
            paint_codes(got, cut)
            assert np.array_equal(got, expected), (view, index)


def test_blobs_hold_the_windowed_image_and_are_named_by_content(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUMORSCOPE_CACHE", str(tmp_path))
    image = np.asfortranarray(np.random.default_rng(0).random((9, 8, 7)).astype(np.float32))
    url = slice_canvas.grey_url(image, level=0.5, width=0.6)
    path = slice_canvas.served_dir() / url
    data = np.frombuffer(gzip.decompress(path.read_bytes()), np.uint8).reshape(image.shape)
    assert np.array_equal(data, slices.window(image, level=0.5, width=0.6))  # C order
    assert slice_canvas.grey_url(image.copy(), level=0.5, width=0.6) == url  # same content
    assert slice_canvas.grey_url(image, level=0.5, width=0.3) != url
    path.unlink()  # pruned, or removed by hand: written again when next asked for
    assert slice_canvas.grey_url(image, level=0.5, width=0.6) == url and path.is_file()
    empty = np.zeros(image.shape, np.uint8)
    assert slice_canvas.codes_url("axial", empty, None, None, overlay="prediction",
                                  overlay_style="filled", alpha=0.5, region="WT") == (None, ())


def test_nearest_tables_are_what_pil_enlarges_by() -> None:
    """The canvas shows the voxel PIL's NEAREST resize would (the server's pictures): at
    exact halves too, where a plain (x + 0.5) * n / size rounds the other way."""
    for n in (40, 44, 155, 240):
        for size in (436, 480, 900):
            row = np.zeros((1, n, 3), np.uint8)
            row[0, :, 0], row[0, :, 1] = np.arange(n) % 256, np.arange(n) // 256
            out = _resize(row, (1, size))[0]
            assert slice_canvas.nearest_index(n, size) == (
                out[:, 0].astype(int) + 256 * out[:, 1].astype(int)).tolist(), (n, size)
    naive = [min(39, int((x + 0.5) * 40 / 436)) for x in range(436)]
    assert naive != slice_canvas.nearest_index(40, 436)  # the case the tables are for


@pytest.fixture(scope="module")
def heat_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_heat_run(tmp_path_factory.getbasetemp() / "heat_run")


def test_a_views_own_steps_move_the_sliders_and_stand(heat_run: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUMORSCOPE_CACHE", str(tmp_path))
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT_S)
    at.session_state["results_dir"] = str(heat_run)
    at.session_state["_goto"] = "slices"
    at = ok(at.run())
    drawn = canvas_args(at)
    assert list(drawn) == ["axial", "coronal", "sagittal"]
    x, y, z = position(at)
    axial = drawn["axial"]
    assert axial["slice"] == z and axial["shape"] == list(SHAPE) and axial["xyz"] == [x, y, z]
    grey = np.frombuffer(gzip.decompress((slice_canvas.served_dir() / axial["grey"])
                                         .read_bytes()), np.uint8)
    assert grey.size == np.prod(SHAPE) and grey.std() > 0
    assert axial["codes"] and axial["palette"]  # the prediction, filled
    assert drawn["coronal"]["codes"] == axial["codes"]  # filled: one blob for all views

    # The browser stepped the axial view 3 slices up: Python takes it, the other views'
    # crosshairs follow, and no view is told to jump (seq, the count of moves, stays).
    seq, case = axial["seq"], axial["case"]
    at.session_state["canvas_axial"] = {"slice": z + 3, "slice_event": "t-1", "seq": seq,
                                        "case": case}
    at = ok(at.run())
    assert position(at) == (x, y, z + 3)
    after = canvas_args(at)
    assert after["axial"]["seq"] == seq and after["axial"]["slice"] == z + 3
    assert after["sagittal"]["xyz"] == [x, y, z + 3]
    assert any(f"voxel (RAS) ({x}, {y}, {z + 3})" in c.value for c in at.caption)
    at = ok(at.run())  # the same report, seen again, moves nothing
    assert position(at) == (x, y, z + 3)

    # Moved by the slider: every view is told to take Python's slices (seq grows), and a
    # report made before that move (an older seq), or on another case, is dropped.
    at.slider(key="sl_z").set_value(z).run()
    moved = canvas_args(ok(at))["axial"]
    assert moved["slice"] == z and moved["seq"] == seq + 1
    at.session_state["canvas_axial"] = {"slice": z + 5, "slice_event": "t-2", "seq": seq,
                                        "case": case}
    assert position(ok(at.run())) == (x, y, z)
    at.session_state["canvas_axial"] = {"slice": z + 5, "slice_event": "t-3",
                                        "seq": seq + 1, "case": "another case"}
    assert position(ok(at.run())) == (x, y, z)
    at.session_state["canvas_axial"] = {"slice": z + 5, "slice_event": "t-4",
                                        "seq": seq + 1, "case": case}
    assert position(ok(at.run())) == (x, y, z + 5)

    # A click in the coronal view moves x and z; the coronal slice (y) stays.
    at.session_state["canvas_coronal"] = {"x": 0, "y": 0, "width": 300, "height": 200,
                                          "unix_time": 5, "slice": y, "slice_event": "c-1",
                                          "seq": seq + 1, "case": case}
    at = ok(at.run())
    assert position(at) == (SHAPE[0] - 1, y, SHAPE[2] - 1)
    assert canvas_args(at)["axial"]["seq"] == seq + 2

    # Outlines are traced per view, the grey blob follows the window; off: server pictures.
    at.segmented_control(key="sl_style").set_value("outline").run()
    outlined = canvas_args(ok(at))
    assert outlined["axial"]["codes"] != outlined["coronal"]["codes"]
    at.slider(key="sl_level").set_value(at.slider(key="sl_level").value * 0.8).run()
    assert canvas_args(ok(at))["axial"]["grey"] != outlined["axial"]["grey"]
    at.toggle(key="sl_browser").set_value(False).run()
    assert not canvas_args(ok(at))
    assert sum("click_" in e.proto.id for e in at.main.get("component_instance")) == 3
