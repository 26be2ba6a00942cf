"""A case's lesions as tables: current rows only, in reading order, and a centroid in world mm
landing on the voxel the slice viewer shows, whatever the file's voxel order."""

from __future__ import annotations

import csv
import doctest
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tumorscope.core.data.geometry import to_ras
from tumorscope.core.errors import LayoutError
from tumorscope.core.store import Run
from tumorscope.render import lesions as lesions_module
from tumorscope.render.lesions import (
    case_lesions,
    frame_radius_mm,
    lesion_list,
    lesions_frame,
    markers,
    ras_voxel,
)

HEADER = ["case_id", "region", "scoring", "lesion", "status", "volume_ml", "dice", "hd95_mm",
          "matched", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm", "prediction_sha256",
          "truth_sha256"]


def _write(path: Path, rows: list[list[object]]) -> None:
    with open(path / "lesions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)


def test_only_rows_of_the_current_prediction_and_truth_are_current(tmp_path: Path) -> None:
    _write(tmp_path, [
        ["A", "WT", "brats2023", 1, "TP", 9.5, 0.9, 2.0, "1", 1, 2, 3, "p1", "t1"],
        ["A", "WT", "brats2023", 2, "FN", 0.4, 0.0, 374, "", 4, 5, 6, "p1", "t1"],
        ["A", "ET", "brats2023", 3, "FP", 0.1, 0.0, 374, "", 7, 8, 9, "p1", "t1"],
        ["A", "WT", "brats2023", 7, "FP", 0.2, 0.0, 374, "", 0, 0, 0, "p0", "t1"],  # old pred
        ["A", "WT", "brats2025", 2, "FN", 0.4, 0.0, 50, "", 4, 5, 6, "p1", "t1"],
        ["B", "WT", "brats2023", 1, "TP", 3.0, 0.8, 1.0, "1", 0, 0, 0, "q", "u"],
    ])
    frame = lesions_frame(Run(tmp_path))
    assert len(frame) == 6 and frame["lesion"].tolist() == [1, 2, 3, 7, 2, 1]
    metrics = pd.DataFrame({"case_id": ["A", "A"], "region": ["WT", "TC"],
                            "prediction_sha256": ["p1", "p1"], "truth_sha256": ["t1", "t1"]})
    split = case_lesions(frame, metrics, "A")
    assert split.stale == 1 and 7 not in split.current["lesion"].tolist()
    assert split.scorings() == ["brats2023", "brats2025"]
    assert case_lesions(frame, metrics, "B").current.empty  # no current score: none current
    listed = lesion_list(split.current, "brats2023")
    assert listed["key"].tolist() == ["brats2023:WT:FN:2", "brats2023:ET:FP:3",
                                      "brats2023:WT:TP:1"]
    only_misses = lesion_list(split.current, "brats2023", statuses=("FN",))
    (miss,) = markers(only_misses)
    assert miss.key == "brats2023:WT:FN:2" and miss.centroid_mm == (4.0, 5.0, 6.0)
    assert miss.volume_ml == 0.4 and miss.dice == 0.0 and miss.hd95_mm == 374.0


def test_no_lesions_file_is_an_empty_table_and_a_damaged_one_is_refused(
        tmp_path: Path) -> None:
    frame = lesions_frame(Run(tmp_path))
    assert frame.empty and {"case_id", "status", "centroid_x_mm"} <= set(frame.columns)
    assert case_lesions(frame, pd.DataFrame({"case_id": []}), "A").stale == 0
    _write(tmp_path, [["A", "WT", "brats2023", 1, "maybe", 1, 0, 0, "", 0, 0, 0, "p", "t"]])
    with pytest.raises(LayoutError, match="status 'maybe'"):
        lesions_frame(Run(tmp_path))


def _affines() -> list[np.ndarray]:
    """Every axis order and direction, with unequal spacing and an offset."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1.0, 1.0), repeat=3):
            affine = np.zeros((4, 4))
            for axis_in, (axis_out, sign, size) in enumerate(zip(perm, signs, (1.0, 1.5, 2.0),
                                                                strict=True)):
                affine[axis_out, axis_in] = sign * size
            affine[:3, 3] = (-40.0, 12.0, 7.5)
            affine[3, 3] = 1.0
            out.append(affine)
    return out


@pytest.mark.parametrize("affine", _affines()[::5])
def test_a_world_point_lands_on_its_voxel_of_the_ras_volume(affine: np.ndarray) -> None:
    shape = (7, 9, 5)
    source = (5, 2, 3)
    marked = np.zeros(shape, np.uint8)
    marked[source] = 1
    world = (affine @ np.array([*source, 1.0]))[:3] + 0.2  # off-centre, within the voxel
    ras = to_ras(marked, affine)
    voxel = ras_voxel(world, affine, shape)
    assert ras.data[voxel] == 1
    far = ras_voxel(world + 1e4, affine, shape)  # outside: clipped to the volume
    assert all(0 <= v < n for v, n in zip(far, ras.shape, strict=True))


def test_frame_radius_grows_with_the_lesion() -> None:
    assert frame_radius_mm(0.001) == frame_radius_mm(float("nan")) == 15.0
    assert frame_radius_mm(100.0) > frame_radius_mm(10.0) > 15.0


def test_docstring_examples() -> None:
    result = doctest.testmod(lesions_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
