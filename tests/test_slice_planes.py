"""The slice viewer's planes: the same pixels whatever the volume's memory order, and no copy
of the volume per view (nibabel hands out Fortran-ordered arrays; a copy of a BraTS volume per
view and layer made each slice step ~60 ms slower)."""

from __future__ import annotations

import numpy as np
import pytest

from tumorscope.render import slices


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("view", slices.VIEWS)
def test_plane_is_a_view_of_the_volume_with_the_display_orientation(view: str,
                                                                     order: str) -> None:
    volume = np.asarray(np.random.default_rng(0).random((7, 9, 5)), order=order)
    flipped = volume[::-1]  # as RAS reorientation hands it over: a view with a negative stride
    axis, row_axis, col_axis = slices.VIEW_AXES[view]
    for source in (volume, flipped):
        plane = slices.slice_2d(source, view, 2)
        rest = [a for a in range(3) if a != axis]
        expected = np.take(np.ascontiguousarray(source), 2, axis=axis).transpose(
            rest.index(row_axis), rest.index(col_axis))[::-1, ::-1]
        np.testing.assert_array_equal(plane, expected)
        assert np.shares_memory(plane, source), "the plane was copied out of the volume"
        assert not plane.flags.writeable  # a view of the caller's volume is not to be drawn on
