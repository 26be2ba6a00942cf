"""The ``tumorscope`` command line: one subcommand per job, each with ``--help``.

Heavy modules (torch, VTK) are imported inside the subcommand that needs them, so
``tumorscope check`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tumorscope.core.errors import ConfigError, TumorscopeError

if TYPE_CHECKING:  # heavy modules load inside the subcommands
    from tumorscope.core.distributed import DistInfo
    from tumorscope.core.prediction.predict import PredictReport
    from tumorscope.core.store import CaseRecord, Run

Command = Callable[[argparse.Namespace], int]


def _say(line: str) -> None:
    """Progress lines of long jobs, on stdout and at once (a watching process reads them).

    One write with its newline: unbuffered (torchrun's ranks on one pipe), ``print`` writes
    the text and the newline apart, and another rank's line could land in between."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _fmt_shape(shape: Sequence[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else "?"


# ---------------------------------------------------------------- flag checks (argparse types)

def _checked_as(dotted: str) -> Callable[[str], object]:
    """An argparse ``type``: the flag's text checked by the rule of the config key
    ``dotted`` (the one ``--set dotted=...`` meets), so a bad value stops before any work
    with ``argument --flag: must be <allowed>, got <value>``."""

    def parse(text: str) -> object:
        from tumorscope.core.config import field_spec, option_problem

        value, problem = option_problem(text, *field_spec(dotted, required=True))
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = dotted
    return parse


def _int_in(low: int, high: int) -> Callable[[str], object]:
    """An argparse ``type``: an integer in ``low..high`` (booleans and fractions refused)."""

    def parse(text: str) -> object:
        from tumorscope.core.config import Kind, Rule, option_problem

        value, problem = option_problem(text, Kind(int), Rule(ge=low, le=high))
        if problem is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = "integer"
    return parse


def _mirror(text: str) -> str:
    """An argparse ``type`` for ``--mirror``: auto, on or off."""
    if text not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"must be auto, on or off, got {text!r}")
    return text


def _device(text: str) -> object:
    """An argparse ``type`` for ``--device``: auto, cpu, cuda, cuda:N or mps, and present."""
    from tumorscope.core.models.checkpoints import device_problem

    name = _checked_as("train.device")(text)
    problem = device_problem(str(name))
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {problem}")
    return name


def _check_slice_folder(folder: Path) -> int:
    """``tumorscope check`` on a 2-D slice dataset: one line per patient, then its faults."""
    from tumorscope.core.data.slice2d import TUMOUR_TYPES
    from tumorscope.core.data.slice_datasets import check_slices, discover_slices

    report = check_slices(discover_slices(folder))
    ds = report.dataset
    folds = (f"  folds: {ds.folds_path.name} ({report.n_folds} folds)"
             if ds.folds_path is not None and report.n_folds else "")
    print(f"{ds.dataset}  {len(report.patients)} patient(s), {report.n_slices} slice(s)"
          f"{folds}  {ds.root}")
    for warning in report.warnings:
        print(f"    warning: {warning}")
    for fault in report.faults:
        print(f"    fault: {fault}")
    for patient in report.patients:
        shapes = ",".join(_fmt_shape(s) for s in patient.shapes) or "?"
        types = ",".join(TUMOUR_TYPES[t] for t in patient.tumour_types)
        labels = sorted({v for s in patient.slices for v in s.labels_present})
        tumour = sum(any(v > 0 for v in s.labels_present) for s in patient.slices)
        what = types if types else (f"labels {','.join(map(str, labels))}"
                                    if ds.dataset == "brats2020-slices"
                                    else f"tumour in {tumour}")
        status = "ok" if patient.ok else \
            f"BAD ({patient.n_bad} bad slice(s), {len(patient.faults)} patient fault(s))"
        synthetic = "  synthetic" if patient.synthetic else ""
        print(f"{patient.patient_id}  {ds.dataset}  {len(patient.slices)} slice(s)  {shapes}  "
              f"{what}{synthetic}  {status}")
        for warning in patient.warnings:
            print(f"    warning: {warning}")
        for fault in patient.faults:
            print(f"    fault: {fault}")
        for s in patient.slices:
            for warning in s.warnings:
                print(f"    warning: {warning}")
            for fault in s.faults:
                print(f"    fault: {fault}")
    bad_patients = sum(not p.ok for p in report.patients)
    print(f"{len(report.patients)} patient(s), {report.n_slices} slice(s): "
          f"{report.n_slices - report.n_bad_slices} ok, {report.n_bad_slices} bad; "
          f"{bad_patients} patient(s) bad")
    return 0 if report.ok else 1


def cmd_check(args: argparse.Namespace) -> int:
    from tumorscope.core.data.cases import check_case, discover
    from tumorscope.core.data.slice_datasets import slice_dataset_kind

    if slice_dataset_kind(args.folder) is not None:  # a 2-D dataset: no NIfTI, slice files
        return _check_slice_folder(args.folder)
    cases = discover(args.folder)
    bad = 0
    for case in cases:
        report = check_case(case)
        spacing = ("x".join(f"{s:.2f}" for s in report.spacing_mm) + " mm"
                   if report.spacing_mm else "?")
        labels = ("labels " + ",".join(map(str, report.labels_present))
                  if report.labels_present is not None
                  else "no label map" if case.label is None else "labels ?")
        status = "ok" if report.ok else f"BAD ({len(report.faults)} fault(s))"
        synthetic = "  synthetic" if case.synthetic else ""
        print(f"{case.case_id}  {case.layout}  {_fmt_shape(report.shape)}  {spacing}  "
              f"{labels}{synthetic}  {status}")
        for warning in report.warnings:
            print(f"    warning: {warning}")
        for fault in report.faults:
            print(f"    fault: {fault.path}: {fault.message}")
        bad += not report.ok
    print(f"{len(cases)} case(s): {len(cases) - bad} ok, {bad} bad")
    return 1 if bad else 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tumorscope.core.data.synthetic import make_demo_cohort

    if args.track == "2d":
        from tumorscope.core.data.synthetic_2d import make_figshare_demo

        if args.style != "demo":
            raise ConfigError(f"--style {args.style} is for --track 3d; --track 2d has one "
                              "style (a figshare-format folder)")
        n_patients = 40 if args.cases is None else args.cases
        files = make_figshare_demo(args.out, n_patients=n_patients, seed=args.seed,
                                   progress=not args.quiet)
        print(f"{len(files)} synthetic slice(s) of {n_patients} patient(s), figshare format "
              f"(MATLAB v7.3 .mat), in {Path(args.out).resolve()}")
        return 0
    args.cases = 20 if args.cases is None else args.cases
    folders = make_demo_cohort(args.out, n_cases=args.cases, seed=args.seed, style=args.style,
                               progress=not args.quiet)
    print(f"{len(folders)} synthetic case(s), style {args.style}, in {Path(args.out).resolve()}")
    if args.style == "shifted":
        print("an out-of-distribution test cohort: score a model on it, never train on it")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from tumorscope.core.data.cases import discover
    from tumorscope.core.data.preprocess import default_cache_dir, preprocess_cases

    cache_dir = Path(args.cache) if args.cache else default_cache_dir()
    cases = discover(args.folder)
    outcomes = preprocess_cases(cases, cache_dir, target_spacing_mm=args.spacing_mm,
                                bias_correction=args.bias_correction, force=args.force,
                                progress=not args.quiet)
    failed = [f"{case.case_id}: {outcome}" for case, outcome in outcomes
              if isinstance(outcome, TumorscopeError)]
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(cases) - len(failed)} case(s) cached in {cache_dir}, {len(failed)} skipped")
    return 1 if failed else 0


def cmd_ensemble(args: argparse.Namespace) -> int:
    from tumorscope.core.models.ensemble import write_ensemble
    from tumorscope.core.oserrors import check_output_folder

    check_output_folder(args.ensemble_out.parent)
    paths = [Path(r) / "checkpoints" / "best.pt" if Path(r).is_dir() else Path(r)
             for r in args.members]
    payload = write_ensemble(paths, args.ensemble_out)
    for m in payload["members"]:
        dice = {k: v for k, v in m["metrics"].items() if k.startswith("dice_")}
        shown = ", ".join(f"{k.removeprefix('dice_')} {v:.3f}" for k, v in dice.items())
        print(f"member {m['path']} (sha256 {m['sha256'][:12]}; validation Dice {shown})")
    print(f"ensemble of {len(paths)} written to {args.ensemble_out}; predict with it: "
          f"tumorscope predict --checkpoint {args.ensemble_out} --input DATA --out RUN")
    return 0


def _fold(text: str) -> tuple[int, int]:
    """``--fold 2/5`` -> (2, 5)."""
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 2 <= int(n) <= 100
            and 1 <= int(k) <= int(n)):
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N and 2 <= N <= 100 "
                                         f"(e.g. 2/5), got {text!r}")
    return int(k), int(n)


def cmd_train(args: argparse.Namespace) -> int:
    from tumorscope.core import distributed
    from tumorscope.core.config import load_config
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import train

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.fold:
        overrides += [f"data.fold={args.fold[0]}", f"data.folds={args.fold[1]}"]
    if args.device:
        overrides.append(f"train.device={args.device}")
    source = args.config or "tiny-cpu"
    out = args.out or Path("runs") / Path(str(source)).stem
    if args.resume and args.config is None:
        # Resuming continues the run as it was configured; --set changes only what it names.
        own = Run(Path(out)).config_path
        if not own.is_file():
            raise TumorscopeError("cannot resume: the run has no config.yaml (pass --config)",
                                  path=out)
        source = own
    cfg = load_config(source, overrides=overrides)
    with distributed.joined(cfg.train.device) as ranks:
        run = train(cfg, out, resume=args.resume, progress=not args.quiet, say=_say)
        if ranks.main:  # under torchrun every rank trains, rank 0 writes
            _write_curves(run)
            print(f"run written to {run.path}")
    return 0


def _write_curves(run: Run) -> None:
    from tumorscope.render.curves import write_run_curves

    path = write_run_curves(run)
    if path is not None:
        print(f"training curves: {path}")


def _fmt(value: object, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_TABLE_COLUMNS: dict[str, tuple[tuple[str, str, str, str, int], ...]] = {
    # scoring -> (header, metric column, statistic, format, width); the first counts cases
    "legacy": (("mean Dice", "dice", "mean", ".3f", 11),
               ("median HD95 mm", "{hd95}", "median", ".2f", 16)),
    "brats2023": (("mean Dice", "brats2023_dice", "mean", ".3f", 11),
                  ("mean HD95 mm", "brats2023_hd95_mm", "mean", ".2f", 14),
                  ("TP", "brats2023_tp", "total", "d", 6), ("FN", "brats2023_fn", "total", "d", 5),
                  ("FP", "brats2023_fp", "total", "d", 5)),
    "brats2025": (("mean RQ", "brats2025_rq", "mean", ".3f", 9),
                  ("mean SQ Dice", "brats2025_sq_dice", "mean", ".3f", 14),
                  ("mean SQ HD95 mm", "brats2025_sq_hd95_mm", "mean", ".2f", 17),
                  ("TP", "brats2025_tp", "total", "d", 6), ("FN", "brats2025_fn", "total", "d", 5),
                  ("FP", "brats2025_fp", "total", "d", 5)),
}
"""What the cohort table shows of each scoring's summary (:mod:`~.core.scoring.summary`)."""


def _print_dice_table(rows: list[dict], summary: dict | None = None, *,
                      hd95: str = "monai") -> None:
    """The cohort table of the current rows, one block per scoring, each named."""
    from tumorscope.core.data.labels import REGIONS
    from tumorscope.core.scoring.distances import HD95_DEFINITIONS, hd95_column
    from tumorscope.core.scoring.summary import summarise

    if not rows:
        print("no current score to show")
        return
    if summary is None:
        summary = summarise(rows, scorings=("legacy",), challenge="gli")
    metrics = summary["metrics"]
    titles = {"legacy": f"legacy (whole volume), {HD95_DEFINITIONS[hd95]}",
              "brats2023": f"brats2023 lesion-wise (challenge {summary.get('challenge')}), "
                           f"{HD95_DEFINITIONS['surfel']}",
              "brats2025": f"brats2025 lesion-wise (one-to-one matching), "
                           f"{HD95_DEFINITIONS['pooled']}"}
    for scoring, columns in _TABLE_COLUMNS.items():
        if scoring not in metrics:
            continue
        columns = tuple((h, key.format(hd95=hd95_column(hd95)), stat, f, w)
                        for h, key, stat, f, w in columns)
        print(titles[scoring])
        print(f"{'region':<8}{'cases':>6}" + "".join(f"{h:>{w}}" for h, _, _, _, w in columns))
        for region in REGIONS:
            entry = metrics[scoring][region]
            n = entry[columns[0][1]]["n"]
            if not n:
                continue
            print(f"{region:<8}{n:>6}" + "".join(
                f"{_fmt(entry[key][stat], f):>{w}}" for _, key, stat, f, w in columns))


def _print_predict_report(report: PredictReport) -> None:
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary())
    print(f"post-processing: {report.postprocess.describe()}; {report.postprocess_source}")
    print(report.mirror.describe())
    if report.taken_over:
        print(f"warning: {report.taken_over}", file=sys.stderr)
    print(f"{len(report.run.case_ids())} prediction(s) in {report.run.predictions_dir}")


def _warn_strays(run: Run) -> None:
    for path in run.stray_files():
        print(f"ignored {path}: not written by tumorscope predict (no record in cases.json)",
              file=sys.stderr)


def _case_lines(ranks: DistInfo, verb: str, quiet: bool) -> Callable[[str, str], None] | None:
    """Under torchrun (unless ``quiet``) one line per case, each rank its own, prefixed
    ``[rank r/N]``, instead of progress bars that would overwrite each other."""
    if quiet or not ranks.distributed:
        return None
    return lambda case_id, what: _say(f"{ranks.tag} {verb} {case_id}: {what}")


def _evaluate_and_print(run: Run, labels: Path | None = None, *, quiet: bool,
                        scorings: Sequence[str] | None = None, challenge: str = "gli",
                        hd95: str = "monai", ranks: DistInfo | None = None) -> int:
    """Score ``run``, print what happened and the table; the number of cases not scored.
    Under torchrun (``ranks``) the ranks share the cases and rank 0 prints the totals."""
    from tumorscope.core.distributed import DistInfo
    from tumorscope.core.scoring.evaluate import evaluate_run
    from tumorscope.core.scoring.scorings import SCORINGS

    ranks = ranks or DistInfo()
    if ranks.main:
        _warn_strays(run)
    report = evaluate_run(run, labels, scorings=scorings or SCORINGS, challenge=challenge,
                          progress=not quiet and not ranks.distributed,
                          on_case=_case_lines(ranks, "evaluate", quiet), ranks=ranks)
    if not ranks.main:
        return len(report.skipped)
    for line in report.skipped:
        print(f"not scored {line}", file=sys.stderr)
    if report.no_truth:
        names = ", ".join(report.no_truth[:5]) + (" ..." if len(report.no_truth) > 5 else "")
        print(f"{len(report.no_truth)} prediction(s) without ground truth, not scored "
              f"({names})")
    kept = sum(1 for c in report.unscored if c not in report.no_truth
               and any(str(r["case_id"]) == c for r in report.rows))
    print(f"scored {len(report.scored)}, unchanged {len(report.reused)}"
          + (f", not scored {len(report.skipped)}" if report.skipped else "")
          + (f" (their earlier rows kept, marked stale: {kept})" if kept else ""))
    _print_dice_table(report.current_rows, report.summary, hd95=hd95)
    return len(report.skipped)


def _is_slice_folder(path: Path) -> bool:
    from tumorscope.core.data.slice_datasets import slice_dataset_kind

    return Path(path).is_dir() and slice_dataset_kind(path) is not None


def _is_slice_run(run: Run) -> bool:
    from tumorscope.core.scoring.evaluate_slices import is_slice_record

    return any(is_slice_record(r) for r in run.case_records().values())


def _print_slice_table(rows: list[dict]) -> None:
    """A 2-D run's table: per region Dice / IoU / HD95, then the tumour-type scores."""
    from tumorscope.core.scoring.evaluate_slices import summarise_slices

    if not rows:
        print("no current score to show")
        return
    s = summarise_slices(rows)
    print(f"slices (2-D), HD95 in {s.hd95_unit} (MONAI definition, 4-connected outlines)")
    print(f"{'region':<8}{'slices':>7}{'mean Dice':>11}{'mean IoU':>10}"
          f"{'median HD95':>13}")
    for region, e in s.regions.items():
        print(f"{region:<8}{e['n']:>7}{e['dice']:>11.3f}{e['jaccard']:>10.3f}"
              f"{e['hd95_median']:>13.2f}")
    print(f"patients: {len(s.patients)}, mean of per-patient mean Dice "
          f"{sum(s.patients.values()) / max(len(s.patients), 1):.3f}")
    if s.types is not None:
        t = s.types
        print(f"tumour type: n={t.n}, accuracy {t.accuracy:.3f}, macro F1 {t.macro_f1:.3f}")
        width = max(len(n) for n in t.class_names) + 2
        head = "true / predicted"
        print(f"{head:<{width + 6}}" + "".join(f"{n:>{width}}" for n in t.class_names)
              + f"{'F1':>7}")
        for name, row in zip(t.class_names, t.confusion, strict=True):
            auc = t.per_class[name]["roc_auc"]
            print(f"{name:<{width + 6}}" + "".join(f"{v:>{width}}" for v in row)
                  + f"{_fmt(t.per_class[name]['f1'], '.3f'):>7}"
                  + (f"  ROC-AUC {auc:.3f}" if auc == auc else ""))


def _evaluate_slices_and_print(run: Run) -> int:
    """Score a 2-D run and print its table; the number of slices not scored."""
    from tumorscope.core.scoring.evaluate_slices import evaluate_slice_run

    report = evaluate_slice_run(run)
    for case_id, why in report.failed.items():
        print(f"not scored {case_id}: {why}", file=sys.stderr)
    print(f"scored {len(report.scored)}, unchanged {len(report.reused)}"
          + (f", not scored {len(report.failed)}" if report.failed else ""))
    _print_slice_table(run.current_metrics_rows())
    return len(report.failed)


def _predict_slices(args: argparse.Namespace, slice_ids: list[str] | None) -> int:
    from tumorscope.core.prediction.predict_slices import predict_slice_run

    report = predict_slice_run(args.checkpoint, args.input, args.out, slice_ids=slice_ids,
                               device=args.device, force=args.force, progress=not args.quiet)
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary())
    print(f"{len(report.run.case_ids())} prediction(s) in {report.run.predictions_dir}")
    not_scored = _evaluate_slices_and_print(report.run)
    return 1 if report.failed or not_scored else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from tumorscope.core import distributed

    with distributed.joined(args.device) as ranks:
        return _predict(args, ranks)


def _predict(args: argparse.Namespace, ranks: DistInfo) -> int:
    """``predict``; under torchrun the ranks share the cases and rank 0 prints the totals."""
    from tumorscope.core.prediction.predict import predict_run

    case_ids = None
    if args.split:
        from tumorscope.core.errors import LayoutError
        from tumorscope.core.store import Run

        split = Run(Path(args.out)).split()
        if not split.get(args.split):
            raise LayoutError(f"--split {args.split}: the run's split.json lists no "
                              f"{args.split} cases (a test set is made by training with "
                              "--set data.test_fraction=0.2)", path=args.out)
        case_ids = split[args.split]
    if _is_slice_folder(args.input):
        if not ranks.main:  # 2-D slices are quick: rank 0 predicts them all
            _say(f"{ranks.tag} 2-D slice folders are predicted by rank 0 alone")
            return 0
        return _predict_slices(args, case_ids)
    report = predict_run(args.checkpoint, args.input, args.out, cache_dir=args.cache,
                         overlap=args.overlap, mirror=args.mirror, amp=args.amp,
                         save_probabilities=args.save_probabilities, device=args.device,
                         force=args.force, progress=not args.quiet and not ranks.distributed,
                         case_ids=case_ids, postprocess=args.postprocess, ranks=ranks,
                         on_case=_case_lines(ranks, "predict", args.quiet))
    if ranks.main:
        _print_predict_report(report)
    run = report.run
    if report.taken_over:  # its scores are another model's now: do not print them as ours
        return 1
    not_scored = 0
    if any(r.label is not None for r in run.case_records().values()):
        not_scored = _evaluate_and_print(run, quiet=args.quiet, ranks=ranks)
    return 1 if report.failed or not_scored else 0


def _one_run(path: Path) -> Run:
    """The run at ``path``; a folder of several runs, or of none, is a one-line error."""
    from tumorscope.core.errors import LayoutError
    from tumorscope.core.store import open_runs

    runs = open_runs(path)
    if len(runs) > 1:
        raise LayoutError(f"holds {len(runs)} runs ({', '.join(r.name for r in runs)}); "
                          "name one run folder", path=path)
    return runs[0]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tumorscope.core import distributed

    # Scoring runs on the CPU: under torchrun the ranks meet over gloo, CUDA untouched.
    with distributed.joined("cpu") as ranks:
        run = _one_run(args.run)
        if _is_slice_run(run):
            if not ranks.main:  # 2-D slices are quick: rank 0 scores them all
                return 0
            not_scored = _evaluate_slices_and_print(run)
            print(f"metrics written to {run.metrics_path}")
            return 1 if not_scored else 0
        not_scored = _evaluate_and_print(run, args.labels, quiet=args.quiet,
                                         scorings=args.scoring, challenge=args.challenge,
                                         hd95=args.hd95, ranks=ranks)
        if ranks.main:
            print(f"metrics written to {run.metrics_path}, {run.lesions_path.name} and "
                  f"{run.summary_path.name}")
        return 1 if not_scored else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from tumorscope.core.data.nifti import atomic_write_text
    from tumorscope.core.oserrors import check_output_folder
    from tumorscope.core.scoring.compare import compare_runs, pairs_csv, report_lines

    if args.csv_out is not None:  # a file, so main's folder check does not apply to it
        if args.csv_out.is_dir():
            raise TumorscopeError("is a folder; --out names the CSV file to write",
                                  path=args.csv_out)
        check_output_folder(args.csv_out.parent)
    comparison = compare_runs(_one_run(args.run_a), _one_run(args.run_b), metric=args.metric,
                              scorings=args.scoring, hd95=args.hd95,
                              n_resamples=args.resamples, seed=args.seed)
    for line in report_lines(comparison):
        print(line)
    if args.csv_out is not None:
        atomic_write_text(args.csv_out, pairs_csv(comparison))
        print(f"paired table ({len(comparison.pairs)} pair(s)) written to {args.csv_out}")
    return 0


def _demo_2d(args: argparse.Namespace) -> int:
    """The 2-D chain on the synthetic figshare folder: data, training (type and outline in
    one model), the held-out test slices predicted and scored."""
    from tumorscope.core.config import load_config
    from tumorscope.core.data.synthetic_2d import make_figshare_demo
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import train

    data = args.data or Path("demo_data_2d")
    out = args.out or Path("runs/demo_2d")
    config = args.config or "tiny-2d"
    n_patients = 40 if args.cases is None else args.cases
    make_figshare_demo(data, n_patients=n_patients, seed=args.seed, progress=not args.quiet)
    cfg = load_config(config, overrides=[f"data.root={data}", *(args.set or [])])
    run = Run(Path(out))
    train(cfg, run.path, resume=run.checkpoint_path("last").is_file(), progress=not args.quiet,
          say=_say)
    _write_curves(run)
    split = run.split()
    scored = split.get("test") or split["val"]
    args.checkpoint, args.input, args.out, args.device, args.force = (
        run.checkpoint_path("best"), data, run.path, "auto", False)
    failed = _predict_slices(args, scored)
    patients = {str(r["patient_id"]) for r in run.current_metrics_rows()}
    if split.get("test"):
        print(f"test slices never seen in training or selection: n={len(scored)} of "
              f"{len(patients)} patient(s), split by patient (synthetic figshare-format "
              f"folder {data}, the same generator as the training slices)")
    else:
        print(f"validation slices: {len(scored)}; they chose best.pt, so this is a "
              "validation figure, not a held-out test score")
    print(f"run: {run.path}  — browse it with: streamlit run streamlit_app.py -- "
          f"--results {run.path}")
    return failed


def cmd_demo(args: argparse.Namespace) -> int:
    from tumorscope.core.config import load_config
    from tumorscope.core.data.preprocess import default_cache_dir
    from tumorscope.core.data.synthetic import make_demo_cohort
    from tumorscope.core.prediction.predict import predict_run
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import check_before_training, train

    if args.track == "2d":
        return _demo_2d(args)
    args.data = args.data or Path("demo_data")
    args.out = args.out or Path("runs/demo")
    args.config = args.config or "tiny-cpu"
    args.cases = 30 if args.cases is None else args.cases

    # The demo sets a fifth of its cohort aside as a test split (unless --set says else), so
    # the figure it prints comes from cases that neither trained nor chose the checkpoint.
    overrides = [f"data.root={args.data}", "data.test_fraction=0.2", *(args.set or [])]
    cfg = check_before_training(load_config(args.config, overrides=overrides))  # before any work
    make_demo_cohort(args.data, n_cases=args.cases, seed=args.seed, progress=not args.quiet)
    run = Run(Path(args.out))
    # An interrupted or finished demo run continues from its last checkpoint (a finished
    # one just reloads), so running the command again never retrains from scratch.
    train(cfg, run.path, resume=run.checkpoint_path("last").is_file(), progress=not args.quiet,
          say=_say)
    _write_curves(run)
    split = run.split()
    from tumorscope.core.data.cases import discover

    unseen = sorted({c.case_id for c in discover(args.data)} - set(split["train"])
                    - set(split["val"]) - set(split.get("test", [])))
    if unseen:  # the run keeps the split it was trained with
        print(f"note: {len(unseen)} case(s) of {args.data} are not in this run's split "
              f"({', '.join(unseen[:5])}); train into a new --out to use them",
              file=sys.stderr)
    from tumorscope.core.training.postprocess_fit import (
        compare_postprocess,
        fit_postprocess,
        predict_unprocessed,
    )

    cache = cfg.data.cache_dir or default_cache_dir()
    # Post-processing is fitted on the validation cases (which chose best.pt too), then
    # applied unchanged to the test cases.
    fit = fit_postprocess(run.path, data_dir=args.data, cache_dir=cache,
                          progress=not args.quiet, mirror_search=args.mirror_search, say=_say)
    for line in fit.lines():
        print(line)
    scored = split.get("test") or split["val"]
    report = predict_run(run.checkpoint_path("best"), args.data, run.path,
                         case_ids=scored, progress=not args.quiet, cache_dir=cache)
    _print_predict_report(report)
    if split.get("test"):
        print(f"test cases never seen in training or selection: n={len(scored)} (synthetic "
              f"demo cohort in {args.data}, the same generator as the training cases)")
    else:
        print(f"validation cases: {len(scored)} (synthetic demo cohort in {args.data}); "
              "they chose best.pt, so this is a validation figure, not a held-out test score")
    failed = len(report.failed) + _evaluate_and_print(run, quiet=args.quiet)
    print(fit.mirror_line() + ("" if args.mirror_search else
                               " — `tumorscope demo --mirror-search` tries it"))
    if fit.postprocess.cleans and not report.failed:
        # With the same mirroring as the run's predictions: before and after differ only
        # by the post-processing.
        before = predict_unprocessed(run, scored, data_dir=args.data, cache_dir=cache,
                                     progress=not args.quiet, mirror=report.mirror.on)
        failed += len(before.failed)
        print(f"post-processing on these {len(scored)} case(s): before = the same checkpoint "
              f"without it ({before.run.path}), after = the run's predictions")
        for line in compare_postprocess(before.run, run, scored):
            print(line)
    else:
        print("post-processing: no candidate raised the objective on the validation cases, "
              "so the predictions above are made without it")
    # Scans the model has never seen the like of: the shifted style (other contrasts,
    # thick slices, artefacts, other anatomy and tumours), beside the data and the run.
    data_dir, out_dir = args.data.resolve(), args.out.resolve()
    shifted_data = data_dir.with_name(f"{data_dir.name}_shifted")
    shifted_run = Run(out_dir.with_name(f"{out_dir.name}_shifted"))
    make_demo_cohort(shifted_data, n_cases=10, seed=args.seed, style="shifted",
                     progress=not args.quiet)
    report = predict_run(run.checkpoint_path("best"), shifted_data, shifted_run.path,
                         progress=not args.quiet, cache_dir=cache)
    _print_predict_report(report)
    print(f"out-of-distribution cohort (shifted style, never trained on): "
          f"n={len(report.run.case_ids())} ({shifted_data})")
    failed += len(report.failed) + _evaluate_and_print(shifted_run, quiet=args.quiet)
    print(f"run: {run.path}  — browse it with: streamlit run streamlit_app.py -- "
          f"--results {run.path}")
    return 1 if failed else 0


def cmd_postprocess(args: argparse.Namespace) -> int:
    from tumorscope.core.training.postprocess_fit import describe_recorded, fit_postprocess

    if not args.fit:
        print(describe_recorded(args.run))
        return 0
    result = fit_postprocess(args.run, objective=args.objective, data_dir=args.data,
                             cache_dir=args.cache, device=args.device,
                             progress=not args.quiet, mirror_search=args.mirror_search,
                             say=_say)
    for line in result.lines():
        print(line)
    print(result.mirror_line())
    print(f"recorded in {result.recorded_in} (postprocess section and its fitted record); "
          f"tumorscope predict --checkpoint {result.checkpoint} applies it")
    return 1 if result.skipped else 0


def cmd_render(args: argparse.Namespace) -> int:
    from tumorscope.core.store import open_runs
    from tumorscope.render.runs import render_run
    from tumorscope.render.scene import check_pixels

    check_pixels("--width", args.width)
    check_pixels("--height", args.height)
    runs = open_runs(args.run)
    written: list[Path] = []
    skipped: list[str] = []
    for run in runs:
        out = args.out if len(runs) == 1 else args.out / run.name
        done, bad = render_run(run, out, case_ids=args.case or None,
                               cameras=args.camera or ["oblique"],
                               window_size=(args.width, args.height), progress=not args.quiet)
        written += done
        skipped += bad
    for line in skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(written)} screenshot(s) in {args.out}, {len(skipped)} case(s) skipped")
    return 1 if skipped else 0


EXPORT_FORMATS = ("png", "glb", "vtp", "stl", "obj", "ply", "html", "seg.nrrd", "itksnap",
                  "slicer")


def _export_case(run: Run, case_id: str, fmt: str, out: Path,
                 cases: dict[str, CaseRecord]) -> list[Path]:
    """One case of ``run`` in ``fmt`` into ``out``: label maps through core's label files,
    surfaces through render's exporters (as the app's download buttons)."""
    from tumorscope.core.data.label_files import LABEL_FILE_FORMATS, write_case_label_files
    from tumorscope.render import export
    from tumorscope.render.runs import case_meshes
    from tumorscope.render.style import LABEL_COLOURS

    record = cases.get(case_id) or run.case_record(case_id)
    if fmt in LABEL_FILE_FORMATS:
        return write_case_label_files(
            run.prediction_path(case_id), out, case_id, format=fmt,
            colours={v: c.rgb for v, c in LABEL_COLOURS.items()},
            convention=record.label_convention)
    meshes = case_meshes(run, case_id, cases=cases, dice={})
    scene = fmt in ("glb", "html")  # one file holding every surface, the brain for context
    named = export.named_meshes(meshes.truth, meshes.prediction,
                                brain=meshes.brain if scene else None)
    if scene:
        return [export.export_meshes(named, out / f"{case_id}.{fmt}", title=case_id)]
    return [export.export_mesh(mesh, out / case_id / f"{name}.{fmt}", name=name)
            for name, mesh in named.items()]


def cmd_export(args: argparse.Namespace) -> int:
    from tumorscope.core.store import open_runs

    runs = open_runs(args.run)
    written: list[Path] = []
    failed: list[str] = []
    for run in runs:
        default = run.path / "exports" / args.format
        out = (args.out if len(runs) == 1 else args.out / run.name) if args.out else default
        present = run.case_ids()
        wanted = args.case or present
        failed += [f"{c}: no prediction for this case in {run.path}" for c in wanted
                   if c not in present]
        ids = [c for c in wanted if c in present]
        if args.format == "png":
            from tumorscope.render.runs import render_run

            done, bad = render_run(run, out, case_ids=ids, cameras=["oblique"],
                                   progress=False) if ids else ([], [])
            written += done
            failed += bad
            continue
        cases = run.case_records()
        for case_id in ids:
            try:
                written += _export_case(run, case_id, args.format, out, cases)
            except TumorscopeError as exc:
                failed.append(f"{case_id}: {exc}")
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    where = args.out or (runs[0].path / "exports" / args.format if len(runs) == 1
                         else "each run's exports/")
    print(f"{len(written)} {args.format} file(s) in {where}, {len(failed)} case(s) skipped")
    return 1 if failed else 0


def cmd_export_model(args: argparse.Namespace) -> int:
    from tumorscope.core.models.checkpoints import load_model
    from tumorscope.core.models.export import export_model
    from tumorscope.core.oserrors import check_output_folder
    from tumorscope.core.prediction.predict import checkpoint_postprocess

    check_output_folder(args.out_file.parent)  # a file, so main's folder check does not apply
    loaded = load_model(args.checkpoint)
    post, source = checkpoint_postprocess(loaded)  # what predict applies to this checkpoint
    done = export_model(loaded, args.out_file, format=args.format,
                        postprocess=post.to_dict(), postprocess_source=source)
    print(f"wrote {done.path} ({done.format}) and {done.spec_path.name} (inputs, "
          "preprocessing, outputs, thresholds)")
    print(done.check.describe())
    return 0 if done.check.ok else 1


def cmd_import_predictions(args: argparse.Namespace) -> int:
    from tumorscope.core.prediction.foreign import import_predictions

    report = import_predictions(args.folder, args.cases, args.out, convention=args.convention,
                                progress=not args.quiet)
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary())
    print(f"{len(report.run.case_ids())} prediction(s) in {report.run.predictions_dir}; "
          f"score them with: tumorscope evaluate {report.run.path}")
    return 1 if report.failed else 0


class _Parser(argparse.ArgumentParser):
    """argparse with the house's error format: one line, ``tumorscope CMD: error: ...``,
    exit 2 (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tumorscope",
        description="3D brain-tumour MRI segmentation: check data, make the demo cohort, "
                    "train, predict, render, browse.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    p = sub.add_parser("check", help="check a folder of BraTS cases and report every fault",
                       description="Find every case below FOLDER (BraTS 2020, 2021 or 2023 "
                                   "layout), read it and print its layout, shape, spacing, "
                                   "labels and faults. A folder of 2-D slices (figshare "
                                   "<n>.mat, LGG <case>_<n>.tif with masks, BraTS 2020 "
                                   "volume_<v>_slice_<s>.h5) is checked slice by slice and "
                                   "reported patient by patient. Exits 1 when any case is bad.")
    p.add_argument("folder", type=Path, help="dataset folder (or a single case folder)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo-data", help="generate the synthetic demo cohort (no download)",
                       description="Write N synthetic cases (tumours grown in the ICBM152 "
                                   "template shipped with nilearn) in BraTS 2021 layout, or "
                                   "(--track 2d) N patients' slices in the figshare format.")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new, empty, or a cohort demo-data wrote (never a "
                        "folder holding anything else, such as a real dataset)")
    p.add_argument("--cases", type=_int_in(1, 99999), default=None,
                   help="number of cases, 1 to 99999 (default 20); with --track 2d the "
                        "number of patients, 1 to 9999 (default 40, about 260 slices)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="random seed >= 0 (default 0)")
    p.add_argument("--style", choices=("demo", "shifted"), default="demo",
                   help="demo (default): the training cohort; shifted: built differently "
                        "(other contrasts, thick slices, artefacts, stronger warps, other "
                        "tumours), ids TSShift_*, to measure a model out of distribution; "
                        "never train on it")
    p.add_argument("--track", choices=("3d", "2d"), default="3d",
                   help="3d (default): BraTS 2021 cases; 2d: a figshare-format folder of "
                        "MATLAB v7.3 slices (1.mat ...) with meningiomas, gliomas and "
                        "pituitary tumours, cvind.mat folds")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("preprocess", help="crop, normalise and cache every case once",
                       description="Crop each case to the brain, z-score each channel over "
                                   "brain voxels and cache it as .npy with its crop box and "
                                   "affine. Entries are rebuilt when a source file changes.")
    p.add_argument("folder", type=Path, help="dataset folder")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache folder (default $TUMORSCOPE_CACHE or ~/.cache/tumorscope)")
    p.add_argument("--spacing-mm", type=_checked_as("data.spacing_mm"), default=None,
                   help="resample to this isotropic spacing after cropping, 0.25 to 10 mm "
                        "(default: keep)")
    p.add_argument("--bias-correction", type=_checked_as("data.bias_correction"),
                   default="off", metavar="off|white_matter",
                   help="divide out each channel's coil bias field, estimated on white "
                        "matter, before the z-score (default off)")
    p.add_argument("--force", action="store_true", help="rebuild entries even if fresh")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("demo", help="the main job on the embedded demo cohort, end to end",
                       description="Build the synthetic demo cohort if missing, train the "
                                   "tiny-cpu preset on it (resuming an interrupted run), "
                                   "fit post-processing and mirroring TTA on the validation "
                                   "cases, predict "
                                   "the test cases, evaluate, print Dice before and after "
                                   "post-processing.")
    p.add_argument("--track", choices=("3d", "2d"), default="3d",
                   help="3d (default): BraTS-like volumes; 2d: figshare-format slices, tumour "
                        "type and outline in one model")
    p.add_argument("--data", type=Path, default=None,
                   help="cohort folder (default demo_data; demo_data_2d with --track 2d)")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default runs/demo; runs/demo_2d with --track 2d)")
    p.add_argument("--cases", type=_int_in(2, 99999), default=None,
                   help="cohort size, 2 to 99999 (default 30; with --track 2d the number of "
                        "patients, default 40)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="cohort seed >= 0 (default 0)")
    p.add_argument("--config", default=None,
                   help="preset or YAML (default tiny-cpu; tiny-2d with --track 2d)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
    # Off in the demo: 8 passes a window cost about 15 s a case on 2 cores, and if chosen
    # the test and shifted cohorts would take them too: past the demo's 8-minute budget.
    p.add_argument("--mirror-search", dest="mirror_search", action="store_true",
                   help="also try mirroring TTA on the validation cases (it predicts them "
                        "again, 8 passes a window) and predict with it if it helps; off by "
                        "default to keep the demo within minutes on a CPU")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a 3D UNet from a preset or YAML config",
                       description="Train on the cases of data.root (cached once), validating "
                                   "on validation cases; writes config.yaml, log.csv and "
                                   "checkpoints/{best,last}.pt into --out. Ctrl-C saves; "
                                   "--resume continues exactly. Runs under torchrun for DDP.")
    p.add_argument("--config", default=None,
                   help="preset name (tiny-cpu, default) or a YAML file (default tiny-cpu; "
                        "with --resume, the run's own config.yaml)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config>)")
    p.add_argument("--data", default=None, help="dataset folder (overrides data.root)")
    p.add_argument("--device", type=_device, default=None,
                   help="auto, cpu, cuda, cuda:N or mps (train.device)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config key, e.g. --set optim.lr=1e-3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints/last.pt")
    p.add_argument("--fold", type=_fold, default=None, metavar="K/N",
                   help="k-fold cross-validation: fold K of N validates (the test split, if "
                        "any, is the same for every fold); train each fold into its own --out")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("ensemble", help="pack several checkpoints (k-fold) into one that "
                                        "averages their probabilities",
                       description="Write one checkpoint holding every member (a run folder "
                                   "means its checkpoints/best.pt); predict with it as with "
                                   "any checkpoint: each window's probabilities are the "
                                   "members' mean.")
    p.add_argument("members", nargs="+", help="run folders or checkpoint files (2 or more)")
    p.add_argument("--out", dest="ensemble_out", type=Path, required=True,
                   help="the ensemble checkpoint file to write (e.g. runs/cv/ensemble.pt)")
    p.set_defaults(func=cmd_ensemble)

    p = sub.add_parser("predict", help="segment every case of a folder with a checkpoint",
                       description="Sliding-window inference over each brain crop, mapped "
                                   "back to the source grid and written as NIfTI with the "
                                   "source affine and header. Scores the cases that have "
                                   "labels into metrics.csv. Finished cases are skipped. "
                                   "Runs under torchrun: the ranks share the cases.")
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoints/*.pt file")
    p.add_argument("--input", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, required=True, help="run folder to write into")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("--overlap", type=_checked_as("train.overlap"), default=None,
                   help="window overlap in [0, 1)")
    p.add_argument("--mirror", type=_mirror, nargs="?", const="on", default="auto",
                   metavar="auto|on|off",
                   help="mirroring test-time augmentation on all 3 axes (8 passes a window): "
                        "auto (default) as the post-processing fit chose on validation for "
                        "this checkpoint (tumorscope postprocess RUN --fit), else off; on "
                        "(also bare --mirror); off")
    p.add_argument("--amp", type=_checked_as("train.amp"), default=None,
                   metavar="auto|bf16|fp16|off",
                   help="autocast of the inference (default: the checkpoint's train.amp); "
                        "bf16 on the CPU cuts the default UNet's peak memory on a BraTS case "
                        "from 1.9 to 1.6 GB. Recorded with the prediction's settings")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <case>_prob.nii.gz with WT/TC/ET probabilities (and with "
                        "mirroring tta_variance/<case>.nii.gz, the mirrored passes' variance)")
    p.add_argument("--device", type=_device, default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="only the cases of this set of the run's split.json (e.g. test: "
                        "the cases set aside by training)")
    p.add_argument("--force", action="store_true", help="predict finished cases again")
    p.add_argument("--postprocess", choices=["auto", "off"], default="auto",
                   help="auto (default): the post-processing fitted for this checkpoint "
                        "(tumorscope postprocess RUN --fit), else its config's; off: none")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("postprocess", help="fit post-processing and mirroring TTA on a run's "
                                           "validation cases",
                       description="With --fit: predict the run's validation cases with "
                                   "best.pt and no post-processing, choose minimum component "
                                   "volumes per region and an ET-to-necrosis volume that "
                                   "raise the objective on them; predict them mirrored too "
                                   "and choose mirroring TTA only if it raises the "
                                   "post-processed objective; print before/after and record "
                                   "the choice in the run's config.yaml (predict then "
                                   "applies it to that checkpoint). Without --fit: show what "
                                   "the run records.")
    p.add_argument("run", type=Path, help="training run folder (with split.json and best.pt)")
    p.add_argument("--fit", action="store_true", help="fit and record it")
    p.add_argument("--objective", choices=["brats2023", "legacy"], default="brats2023",
                   help="brats2023 (default): BraTS 2023 lesion-wise Dice; legacy: Dice; "
                        "each the mean of WT, TC and ET")
    p.add_argument("--data", type=Path, default=None,
                   help="dataset folder (default: the run's data.root)")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("--device", type=_device, default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--no-mirror-search", dest="mirror_search", action="store_false",
                   help="do not try mirroring TTA (it predicts the validation cases again, "
                        "8 passes a window); the fit then records it off")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_postprocess)

    p = sub.add_parser("render", help="off-screen 3D screenshots of every case of a run",
                       description="Mesh truth and prediction per region (cached in the run), "
                                   "build the comparison scene and write "
                                   "<case>_<camera>.png; no display needed.")
    p.add_argument("run", type=Path, help="run folder (or a folder of runs)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--camera", action="append", default=None,
                   choices=["axial", "coronal", "sagittal", "oblique"],
                   help="camera preset (repeatable; default oblique)")
    p.add_argument("--width", type=int, default=1024,
                   help="image width in pixels, 16..8192 (default 1024)")
    p.add_argument("--height", type=int, default=768,
                   help="image height in pixels, 16..8192 (default 768)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("evaluate", help="score a run's predictions into metrics.csv",
                       description="Scores per case and region (WT, TC, ET) as the BraTS "
                                   "challenges score: legacy (whole-volume Dice, IoU, HD95 "
                                   "in mm by every definition, sensitivity, specificity, "
                                   "volumes), brats2023 and brats2025 lesion-wise. Writes "
                                   "metrics.csv, lesions.csv (one row per lesion) and "
                                   "summary.json into the run. Runs under torchrun: the "
                                   "ranks share the cases.")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--labels", type=Path, default=None,
                   help="dataset folder with ground truth (default: the labels recorded "
                        "at prediction)")
    p.add_argument("--scoring", nargs="+", choices=("legacy", "brats2023", "brats2025"),
                   default=None, metavar="SCORING",
                   help="scorings to compute: legacy, brats2023, brats2025 (default: all; "
                        "legacy is always computed)")
    p.add_argument("--challenge", choices=("gli", "men", "met", "ped", "ssa"), default="gli",
                   help="BraTS 2023 sub-challenge whose lesion parameters brats2023 uses "
                        "(default gli)")
    p.add_argument("--hd95", choices=("monai", "pooled", "surfel"), default="monai",
                   help="HD95 definition the printed legacy table shows (all are in "
                        "metrics.csv; default monai)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="is run B better than run A? paired, per patient",
                       description="Pair the current scores of two runs per case and region "
                                   "over the cases both scored against the same ground "
                                   "truth; print per region n, mean A, mean B, the mean "
                                   "difference B - A with a bootstrap 95%% interval and a "
                                   "Wilcoxon signed-rank p-value; list the cases scored in "
                                   "one run only and the stale rows left out. Pairs with an "
                                   "infinite or undefined value stay in the table, marked, "
                                   "and out of the statistics.")
    p.add_argument("run_a", type=Path, metavar="RUN_A", help="run folder of model A")
    p.add_argument("run_b", type=Path, metavar="RUN_B", help="run folder of model B")
    p.add_argument("--metric", choices=("dice", "hd95", "jaccard", "sensitivity",
                                        "specificity", "rq"), default="dice",
                   help="score to compare (default dice; rq is brats2025's; jaccard, "
                        "sensitivity and specificity are legacy's)")
    p.add_argument("--scoring", nargs="+", choices=("legacy", "brats2023", "brats2025"),
                   default=["legacy"], metavar="SCORING",
                   help="legacy (default), brats2023, brats2025: one summary per scoring")
    p.add_argument("--hd95", choices=("monai", "pooled", "surfel"), default=None,
                   help="legacy's HD95 definition (default monai; the lesion-wise scorings "
                        "measure HD95 their own way, named in the output)")
    p.add_argument("--resamples", type=_int_in(100, 10_000_000), default=10_000,
                   help="bootstrap resamples, 100 to 10000000 (default 10000)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="bootstrap seed >= 0 (default 0): the same seed, the same interval")
    p.add_argument("--out", dest="csv_out", type=Path, default=None, metavar="FILE.csv",
                   help="write the paired table (one row per case, region and scoring) here")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="a run's results as files other tools open",
                       description="Write each case of RUN (default every case) in one "
                                   "format: png (the 3-D comparison scene), glb or html (every "
                                   "surface in one file), vtp, stl, obj or ply (one file per "
                                   "surface), seg.nrrd (3D Slicer segmentation, segments "
                                   "named and coloured), itksnap (the label map and an "
                                   "ITK-SNAP label description file), slicer (the label map "
                                   "and a Slicer colour table). A bad case is named and the "
                                   "others exported; exits 1 when any failed.")
    p.add_argument("run", type=Path, help="run folder (or a folder of runs)")
    p.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                   help="file format: " + ", ".join(EXPORT_FORMATS))
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN/exports/<format>)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("export-model", help="a checkpoint as TorchScript or ONNX, checked",
                       description="Export the checkpoint's network (one window of z-scored "
                                   "T1, T1ce, T2, FLAIR in, WT/TC/ET logits out) and write "
                                   "PATH.json beside it: channel order, spacing, "
                                   "normalisation, patch size, sigmoid outputs, thresholds. "
                                   "Then run the file (torch.jit.load, or onnxruntime on the "
                                   "CPU) and the checkpoint on one input and print the "
                                   "largest logit difference; exits 1 above 1e-3.")
    p.add_argument("checkpoint", type=Path, help="a checkpoints/*.pt file")
    p.add_argument("--format", required=True, choices=("torchscript", "onnx"),
                   help="torchscript (.pt) or onnx (.onnx)")
    p.add_argument("--out", dest="out_file", type=Path, required=True, metavar="PATH",
                   help="file to write, e.g. model.onnx")
    p.set_defaults(func=cmd_export_model)

    p = sub.add_parser("import-predictions",
                       help="bring another tool's predictions into a run, to score and browse",
                       description="Read FOLDER's NIfTI predictions (<case>.nii.gz), map "
                                   "their labels to Tumorscope's (--convention brats: 1 "
                                   "NCR, 2 ED, 4 ET, or 3 ET in BraTS 2023 files; nnunet: 1 "
                                   "ED, 2 NCR, 3 ET), check each against its case's grid in "
                                   "DATA_ROOT and write it into the run --out, recorded as "
                                   "imported (folder, convention, SHA-256). tumorscope "
                                   "evaluate then scores it. Exits 1 when any file failed.")
    p.add_argument("folder", type=Path, help="folder of the other tool's NIfTI predictions")
    p.add_argument("--cases", type=Path, required=True, metavar="DATA_ROOT",
                   help="dataset folder of the cases (images and ground truth)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write into")
    p.add_argument("--convention", required=True, choices=("brats", "nnunet"),
                   help="label numbering of the files: brats or nnunet")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_predictions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tumorscope`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    from tumorscope.core.oserrors import check_output_folder, describe_os_error

    # The command's path options as the user wrote them ("--out", "FOLDER"), so that an OS
    # error can say which option points at the wrong kind of thing.
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    path_flags = {(a.option_strings[-1] if a.option_strings else a.dest.upper()): value
                  for a in sub.choices[args.command]._actions
                  if isinstance(value := getattr(args, a.dest, None), Path)}
    try:
        # Output folders are checked before any work starts, not after minutes of it.
        # (A cache of fresh entries is only read, so it may be on a read-only disk.)
        check_output_folder(getattr(args, "out", None))
        check_output_folder(getattr(args, "cache", None), may_be_read_only=True)
        return int(args.func(args))
    except TumorscopeError as exc:
        print(f"tumorscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file where a folder should be, disk full, permission denied
        print(f"tumorscope {args.command}: error: {describe_os_error(exc, path_flags)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tumorscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
