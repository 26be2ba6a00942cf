"""Rendering a run: each case's truth, prediction and brain surfaces (read through the store,
cached by :mod:`~tumorscope.render.mesh_cache`), its comparison scene, and PNGs of a whole run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyvista as pv

from tumorscope.core.errors import LayoutError, TumorscopeError
from tumorscope.core.store import CaseRecord, Run

from .layers import CameraPreset, SceneOptions, check_window_size
from .mesh_cache import BRAIN_MESH, case_surfaces
from .scene import comparison_scene, save_png


@dataclass(frozen=True)
class CaseMeshes:
    """World-mm surfaces of one case: ``truth`` is ``None`` without ground truth."""

    case_id: str
    truth: dict[str, pv.PolyData] | None
    prediction: dict[str, pv.PolyData]
    brain: pv.PolyData | None
    dice: dict[str, float]
    synthetic: bool = False


def case_meshes(
    run: Run, case_id: str, *, cases: Mapping[str, CaseRecord] | None = None,
    dice: dict[str, float] | None = None,
) -> CaseMeshes:
    """Meshes of ``case_id`` in ``run`` (cached in the run), and its Dice per region.

    ``cases`` (``run.case_records()``) and ``dice`` may be passed in when many cases are drawn, so
    the run's tables are read once rather than once per case.
    """
    if not run.prediction_path(case_id).is_file():
        raise LayoutError(f"no prediction for case {case_id!r} in the run", path=run.path)
    record = cases[case_id] if cases and case_id in cases else run.case_record(case_id)
    prediction = case_surfaces(run, record, "prediction") or {}
    truth = case_surfaces(run, record, "truth")
    brain = (case_surfaces(run, record, "brain") or {}).get(BRAIN_MESH)
    if dice is None:
        dice = run.dice_by_region(case_id).get(case_id, {})
    return CaseMeshes(case_id, truth, prediction, brain, dice, record.synthetic)


def case_scene(meshes: CaseMeshes, options: SceneOptions | None = None) -> pv.Plotter:
    """The standard comparison scene of a case (VTK); without a title in ``options`` it is
    titled with the case id (and marked synthetic demo data where it is)."""
    options = options or SceneOptions()
    if options.title is None:
        options = replace(options, title=meshes.case_id + (
            "  (synthetic demo data)" if meshes.synthetic else ""))
    return comparison_scene(meshes.truth, meshes.prediction, brain=meshes.brain,
                            dice=meshes.dice or None, options=options)


def render_run(
    run: Run,
    out_dir: str | Path,
    *,
    case_ids: Sequence[str] | None = None,
    cameras: Iterable[CameraPreset] = ("oblique",),
    window_size: tuple[int, int] = (1024, 768),
    progress: bool = True,
) -> tuple[list[Path], list[str]]:
    """Write ``<case>_<camera>.png`` for each case of ``run`` into ``out_dir``.

    Returns the files written and one line per case skipped (a missing or unreadable
    prediction or label file); one bad case does not stop the others.
    """
    from tqdm import tqdm

    # Options are checked before any case is meshed.
    window_size = check_window_size(window_size)
    views = [SceneOptions(camera=cam, window_size=window_size) for cam in cameras]
    ids = list(case_ids) if case_ids else run.case_ids()
    out = Path(out_dir)
    written: list[Path] = []
    skipped: list[str] = []
    cases, dice = run.case_records(), run.dice_by_region()
    for case_id in tqdm(ids, desc="render", unit="case", disable=not progress):
        try:
            meshes = case_meshes(run, case_id, cases=cases, dice=dice.get(case_id, {}))
        except TumorscopeError as exc:
            skipped.append(f"{case_id}: {exc}")
            continue
        for view in views:
            plotter = case_scene(meshes, view)
            try:
                written.append(save_png(out / f"{case_id}_{view.camera}.png", plotter))
            finally:
                plotter.close()
    return written, skipped
