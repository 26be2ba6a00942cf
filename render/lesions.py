"""A case's lesions as tables: lesions.csv through the store, which rows are current, the list a
page shows, the markers a scene draws, and where a lesion lies in a volume's voxels.

Pure pandas and numpy over :class:`~tumorscope.core.store.Run`; the app caches them
(:mod:`tumorscope.app.lesions`), scripts call them directly. A lesion row is current only when
it names the prediction and truth (SHA-256) that the case's current metric rows scored: a row
of an earlier prediction or ground truth is stale and never shown as current.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tumorscope.core.scoring.scorings import LESION_HD95 as SCORING_HD95
from tumorscope.core.store import Run

from .layers import LESION_STATUSES, LesionMarker

LESION_SCORINGS: tuple[str, ...] = tuple(SCORING_HD95)
"""The lesion-wise scorings whose rows lesions.csv holds."""

COLUMNS: tuple[str, ...] = (
    "case_id", "region", "scoring", "lesion", "status", "volume_ml", "centroid_x_mm",
    "centroid_y_mm", "centroid_z_mm", "dice", "hd95_mm", "matched", "prediction_sha256",
    "truth_sha256")
NUMBERS: tuple[str, ...] = ("volume_ml", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
                            "dice", "hd95_mm")
_STATUS_ORDER = {s: i for i, s in enumerate(("FN", "FP", "TP", "ignored"))}
_REGION_ORDER = {"WT": 0, "TC": 1, "ET": 2}


def lesions_frame(run: Run) -> pd.DataFrame:
    """Every row of the run's lesions.csv (:meth:`Run.lesion_rows`, checked there), numbers as
    floats, ids and hashes as text; empty (with the columns) when the run has none."""
    return typed_frame(run.lesion_rows())


def typed_frame(rows: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """Lesion rows as :func:`lesions_frame` types them; no rows: an empty table of the columns.

    >>> typed_frame().columns[:5].tolist()
    ['case_id', 'region', 'scoring', 'lesion', 'status']
    """
    frame = pd.DataFrame(list(rows), columns=None if rows else list(COLUMNS))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    for column in ("case_id", "region", "scoring", "status", "prediction_sha256",
                   "truth_sha256", "matched"):
        frame[column] = frame[column].map(lambda v: "" if v is None else str(v))
    for column in NUMBERS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["lesion"] = pd.to_numeric(frame["lesion"], errors="coerce").astype("Int64")
    return frame


@dataclass(frozen=True)
class CaseLesions:
    """One case's lesion rows, split by whether they score what its current metrics score."""

    current: pd.DataFrame
    """Rows whose prediction and truth hashes are those of the case's current metric rows."""
    stale: int
    """How many rows of this case in lesions.csv score another prediction or ground truth."""

    def scorings(self) -> list[str]:
        """The lesion-wise scorings the current rows hold, in :data:`LESION_SCORINGS` order."""
        present = set(self.current["scoring"])
        return [s for s in LESION_SCORINGS if s in present]


def case_lesions(lesions: pd.DataFrame, metrics: pd.DataFrame, case_id: str) -> CaseLesions:
    """Split ``case_id``'s rows of ``lesions`` (:func:`lesions_frame`) against ``metrics``
    (the current metric rows, :func:`~tumorscope.render.cohort.metrics_frame`).

    A case without a current metric row has no current lesion: all its rows are stale.

    >>> lesions = pd.DataFrame({"case_id": ["A", "A", "B"], "prediction_sha256": ["p", "old",
    ...                         "q"], "truth_sha256": ["t", "t", "u"]})
    >>> metrics = pd.DataFrame({"case_id": ["A"], "prediction_sha256": ["p"],
    ...                         "truth_sha256": ["t"]})
    >>> split = case_lesions(lesions, metrics, "A")
    >>> len(split.current), split.stale, case_lesions(lesions, metrics, "B").stale
    (1, 1, 1)
    """
    mine = lesions[lesions["case_id"] == case_id]
    rows = metrics[metrics["case_id"] == case_id]
    if rows.empty or "prediction_sha256" not in rows or "truth_sha256" not in rows:
        return CaseLesions(mine.iloc[0:0], len(mine))
    scored = {(str(p), str(t)) for p, t in zip(rows["prediction_sha256"],
                                                 rows["truth_sha256"], strict=True)}
    keep = np.fromiter(((str(p), str(t)) in scored for p, t in zip(
        mine["prediction_sha256"], mine["truth_sha256"], strict=True)), bool, len(mine))
    return CaseLesions(mine[keep], int((~keep).sum()))


def lesion_key(scoring: str, region: str, status: str, lesion: int) -> str:
    """The key of one lesion of a case (:attr:`~tumorscope.render.layers.LesionMarker.key`).

    >>> lesion_key("brats2023", "TC", "FP", 4)
    'brats2023:TC:FP:4'
    """
    return f"{scoring}:{region}:{status}:{int(lesion)}"


def lesion_list(current: pd.DataFrame, scoring: str, *,
                statuses: Sequence[str] = LESION_STATUSES) -> pd.DataFrame:
    """The rows of one ``scoring`` with a status in ``statuses``, in the order a reader
    wants them: misses first, then false positives, matches, ignored; larger lesions first
    within each, then by region. A ``key`` column names each lesion (:func:`lesion_key`).

    >>> rows = pd.DataFrame({"scoring": ["brats2023"] * 3, "region": ["WT", "WT", "ET"],
    ...                      "status": ["TP", "FN", "FN"], "lesion": [1, 2, 1],
    ...                      "volume_ml": [9.0, 0.5, 1.5]})
    >>> lesion_list(rows, "brats2023")["key"].tolist()
    ['brats2023:ET:FN:1', 'brats2023:WT:FN:2', 'brats2023:WT:TP:1']
    """
    rows = current[(current["scoring"] == scoring) & current["status"].isin(list(statuses))]
    rows = rows.assign(
        _status=rows["status"].map(_STATUS_ORDER), _region=rows["region"].map(_REGION_ORDER),
        key=[lesion_key(scoring, r, s, i) for r, s, i in zip(
            rows["region"], rows["status"], rows["lesion"], strict=True)])
    rows = rows.sort_values(["_status", "volume_ml", "_region", "lesion"],
                            ascending=[True, False, True, True], kind="stable")
    return rows.drop(columns=["_status", "_region"]).reset_index(drop=True)


def markers(rows: pd.DataFrame) -> list[LesionMarker]:
    """The scene's markers of lesion rows (:func:`lesion_list`'s, or any with its columns)."""
    out = []
    for row in rows.itertuples(index=False):
        dice = None if pd.isna(row.dice) else float(row.dice)
        hd95 = None if pd.isna(row.hd95_mm) else float(row.hd95_mm)
        out.append(LesionMarker(
            scoring=str(row.scoring), region=str(row.region), lesion=int(row.lesion),
            status=str(row.status),  # type: ignore[arg-type]
            centroid_mm=(float(row.centroid_x_mm), float(row.centroid_y_mm),
                         float(row.centroid_z_mm)),
            volume_ml=float(row.volume_ml), dice=dice, hd95_mm=hd95))
    return out


def ras_grid(affine: np.ndarray, shape: Sequence[int]
             ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """(affine, shape) of a volume of ``shape`` (the file's voxel order, ``affine`` its NIfTI
    affine) once turned to RAS order (:func:`~tumorscope.core.data.geometry.to_ras`): the
    affine maps indices of the RAS array to the same world mm.

    >>> affine, shape = ras_grid(np.diag([-1.0, -1.0, 2.0, 1.0]), (10, 20, 5))
    >>> affine[:3, 3].tolist(), shape
    ([-9.0, -19.0, 0.0], (10, 20, 5))
    """
    import nibabel as nib

    ornt = nib.orientations.io_orientation(affine)
    ras_shape = [0, 0, 0]
    for axis_in, (axis_out, _) in enumerate(ornt):
        ras_shape[int(axis_out)] = int(shape[axis_in])
    ras = np.asarray(affine, float) @ nib.orientations.inv_ornt_aff(ornt, tuple(shape))
    return ras, tuple(ras_shape)  # type: ignore[return-value]


def ras_voxel(world_mm: Sequence[float], affine: np.ndarray,
              shape: Sequence[int]) -> tuple[int, int, int]:
    """The voxel of a RAS-ordered volume nearest to a world point (RAS+ mm), clipped inside.

    ``affine`` and ``shape`` are the NIfTI file's own (any voxel order): the index is that
    of the volume the slice viewer shows (:func:`~tumorscope.core.data.geometry.to_ras`).

    >>> ras_voxel((-3.2, -0.4, 4.1), np.diag([-1.0, -1.0, 2.0, 1.0]), (10, 20, 5))
    (6, 19, 2)
    """
    ras, ras_shape = ras_grid(affine, shape)
    index = np.linalg.solve(ras, np.array([*map(float, world_mm), 1.0]))[:3]
    return tuple(int(np.clip(round(float(v)), 0, n - 1))  # type: ignore[return-value]
                 for v, n in zip(index, ras_shape, strict=True))


def frame_radius_mm(volume_ml: float, *, least_mm: float = 15.0) -> float:
    """Radius of the ball a camera frames around a lesion of ``volume_ml``: two and a half
    times the radius of a sphere of that volume, never under ``least_mm`` (some context).

    >>> frame_radius_mm(0.01), round(frame_radius_mm(33.5), 1)
    (15.0, 50.0)
    """
    if not math.isfinite(volume_ml) or volume_ml <= 0:
        return least_mm
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    return max(least_mm, 2.5 * radius)
