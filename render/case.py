"""A run's case as meshes and scenes: truth, prediction and brain read through the store,
meshed once and cached in ``RUN/meshes/<case>/``; PNGs for a whole run."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pyvista as pv

from tumorscope.core.data.nifti import atomic_path, atomic_write_json, read_nifti
from tumorscope.core.errors import LayoutError, TumorscopeError
from tumorscope.core.fingerprint import fingerprint, same_content
from tumorscope.core.store import CaseRecord, Run

from .layers import SceneOptions, check_window_size
from .mesh import brain_surface, cached_region_meshes
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


def cached_brain_surface(image_path: str | Path, cache_dir: str | Path) -> pv.PolyData:
    """:func:`brain_surface` of a skull-stripped image, cached as ``brain.vtp`` beside the
    content fingerprint of the source, so it is rebuilt exactly when the image's bytes change
    (the hash is recomputed only when the file's stat identity changed)."""
    image_path, cache_dir = Path(image_path), Path(cache_dir)
    mesh_path, key_path = cache_dir / "brain.vtp", cache_dir / "brain.json"
    try:
        previous = json.loads(key_path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        previous = None
    key = fingerprint(image_path, previous if isinstance(previous, dict) else None)
    if same_content(previous if isinstance(previous, dict) else None, key) \
            and mesh_path.is_file():
        try:
            return pv.read(mesh_path)
        except (OSError, ValueError):
            pass  # damaged cache file: rebuilt below
    vol = read_nifti(image_path)
    mesh = brain_surface(vol.data, vol.affine, simplify_mm=3.0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(mesh_path) as tmp:
        mesh.save(tmp)
    atomic_write_json(key_path, key)
    return mesh


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
    cache = run.mesh_dir(case_id)
    prediction = cached_region_meshes(run.prediction_path(case_id), cache / "prediction",
                                      convention=record.label_convention)
    truth = None
    if record.has_truth:
        truth = cached_region_meshes(record.label, cache / "truth",
                                     convention=record.label_convention)
    brain = None if record.brain_image is None else cached_brain_surface(record.brain_image,
                                                                         cache)
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
    cameras: Iterable[str] = ("oblique",),
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
