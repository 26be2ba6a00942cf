"""Label <-> region conversion, the one label convention inside the code."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscope.core import errors
from tumorscope.core.data.labels import (
    REGIONS,
    check_labels,
    from_canonical,
    labels_to_regions,
    regions_to_labels,
    to_canonical,
)


def test_regions_are_nested_unions() -> None:
    label = np.array([0, 1, 2, 4, 4, 2])
    wt, tc, et = labels_to_regions(label)
    assert REGIONS == ("WT", "TC", "ET")
    np.testing.assert_array_equal(wt, [0, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(tc, [0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(et, [0, 0, 0, 1, 1, 0])


def test_subregion_labels_round_trip_exactly_on_random_volumes() -> None:
    rng = np.random.default_rng(3)
    label = rng.choice(np.array([0, 1, 2, 4], np.uint8), size=(17, 13, 11))
    back = regions_to_labels(labels_to_regions(label))
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, label)


def test_brats2023_round_trip_through_canonical() -> None:
    on_disk = np.array([0, 1, 2, 3, 3], np.uint8)
    canonical = to_canonical(on_disk, convention="brats2023")
    np.testing.assert_array_equal(canonical, [0, 1, 2, 4, 4])
    np.testing.assert_array_equal(from_canonical(canonical, convention="brats2023"), on_disk)
    np.testing.assert_array_equal(to_canonical(canonical), canonical)


def test_unnested_regions_still_give_valid_labels() -> None:
    regions = np.zeros((3, 4), bool)
    regions[1, 0] = True  # TC without WT
    regions[2, 1] = True  # ET alone
    np.testing.assert_array_equal(regions_to_labels(regions), [1, 4, 0, 0])


def test_check_labels_rejects_unknown_and_fractional_values() -> None:
    check_labels(np.array([0, 1, 2, 3]), convention="brats2023")
    with pytest.raises(errors.LabelError, match=r"\[3\]"):
        check_labels(np.array([0, 3]), convention="brats2020", path="x_seg.nii.gz")
    with pytest.raises(errors.LabelError, match="non-integer"):
        check_labels(np.array([0.0, 1.5]))
    with pytest.raises(errors.LabelError, match="unknown label convention 'brats1999'"):
        to_canonical(np.array([0]), convention="brats1999")
    with pytest.raises(errors.LabelError, match="3 channels"):
        regions_to_labels(np.zeros((2, 4), bool))
