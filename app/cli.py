"""The ``tumorscope`` command line: one subcommand per job, each with ``--help``.

Heavy modules (torch, VTK) are imported inside the subcommand that needs them, so
``tumorscope check`` starts in a fraction of a second.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from tumorscope.core.errors import TumorscopeError

if TYPE_CHECKING:  # heavy modules load inside the subcommands
    from tumorscope.core.prediction.predict import PredictReport
    from tumorscope.core.store import Run

Command = Callable[[argparse.Namespace], int]


def _say(line: str) -> None:
    """Progress lines of long jobs, on stdout and at once (a watching process reads them)."""
    print(line, flush=True)


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


def _device(text: str) -> object:
    """An argparse ``type`` for ``--device``: auto, cpu, cuda, cuda:N or mps, and present."""
    from tumorscope.core.models.checkpoints import device_problem

    name = _checked_as("train.device")(text)
    problem = device_problem(str(name))
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} cannot be used: {problem}")
    return name


def cmd_check(args: argparse.Namespace) -> int:
    from tumorscope.core.data.cases import check_case, discover

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

    folders = make_demo_cohort(args.out, n_cases=args.cases, seed=args.seed,
                               progress=not args.quiet)
    print(f"{len(folders)} synthetic case(s) in {Path(args.out).resolve()}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tumorscope.core.data.cases import discover
    from tumorscope.core.data.preprocess import default_cache_dir, preprocess_case

    cache_dir = Path(args.cache) if args.cache else default_cache_dir()
    cases = discover(args.folder)
    failed: list[str] = []
    for case in tqdm(cases, desc="preprocess", unit="case", disable=args.quiet):
        try:
            preprocess_case(case, cache_dir, target_spacing_mm=args.spacing_mm, force=args.force)
        except TumorscopeError as exc:
            failed.append(f"{case.case_id}: {exc}")
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(cases) - len(failed)} case(s) cached in {cache_dir}, {len(failed)} skipped")
    return 1 if failed else 0


def cmd_train(args: argparse.Namespace) -> int:
    from tumorscope.core.config import load_config
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import train

    overrides = list(args.set or [])
    if args.data:
        overrides.append(f"data.root={args.data}")
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
    run = train(cfg, out, resume=args.resume, progress=not args.quiet, say=_say)
    print(f"run written to {run.path}")
    return 0


def _print_dice_table(rows: list[dict]) -> None:
    from tumorscope.core.data.labels import REGIONS

    if not rows:
        print("no current score to show")
        return
    print(f"{'region':<8}{'cases':>6}{'mean Dice':>11}{'median HD95 mm':>16}")
    for region in REGIONS:
        sel = [r for r in rows if r["region"] == region]
        if not sel:
            continue
        dices = [float(r["dice"]) for r in sel]
        hds = [float(r["hd95_mm"]) for r in sel]
        print(f"{region:<8}{len(sel):>6}{statistics.fmean(dices):>11.3f}"
              f"{statistics.median(hds):>16.2f}")


def _print_predict_report(report: PredictReport) -> None:
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary())
    if report.taken_over:
        print(f"warning: {report.taken_over}", file=sys.stderr)
    print(f"{len(report.run.case_ids())} prediction(s) in {report.run.predictions_dir}")


def _warn_strays(run: Run) -> None:
    for path in run.stray_files():
        print(f"ignored {path}: not written by tumorscope predict (no record in cases.json)",
              file=sys.stderr)


def _evaluate_and_print(run: Run, labels: Path | None = None, *, quiet: bool) -> int:
    """Score ``run``, print what happened and the table; the number of cases not scored."""
    from tumorscope.core.scoring.evaluate import evaluate_run

    _warn_strays(run)
    report = evaluate_run(run, labels, progress=not quiet)
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
    _print_dice_table(report.current_rows)
    return len(report.skipped)


def cmd_predict(args: argparse.Namespace) -> int:
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
    report = predict_run(args.checkpoint, args.input, args.out, cache_dir=args.cache,
                         overlap=args.overlap, mirror=args.mirror,
                         save_probabilities=args.save_probabilities, device=args.device,
                         force=args.force, progress=not args.quiet, case_ids=case_ids)
    _print_predict_report(report)
    run = report.run
    if report.taken_over:  # its scores are another model's now: do not print them as ours
        return 1
    not_scored = 0
    if any(r.label is not None for r in run.case_records().values()):
        not_scored = _evaluate_and_print(run, quiet=args.quiet)
    return 1 if report.failed or not_scored else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tumorscope.core.errors import LayoutError
    from tumorscope.core.store import open_runs

    runs = open_runs(args.run)
    if len(runs) > 1:
        raise LayoutError(f"holds {len(runs)} runs ({', '.join(r.name for r in runs)}); "
                          "name one run folder", path=args.run)
    (run,) = runs
    not_scored = _evaluate_and_print(run, args.labels, quiet=args.quiet)
    print(f"metrics written to {run.metrics_path}")
    return 1 if not_scored else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tumorscope.core.config import load_config
    from tumorscope.core.data.preprocess import default_cache_dir
    from tumorscope.core.data.synthetic import make_demo_cohort
    from tumorscope.core.prediction.predict import predict_run
    from tumorscope.core.store import Run
    from tumorscope.core.training.train import check_before_training, train

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
    split = run.split()
    from tumorscope.core.data.cases import discover

    unseen = sorted({c.case_id for c in discover(args.data)} - set(split["train"])
                    - set(split["val"]) - set(split.get("test", [])))
    if unseen:  # the run keeps the split it was trained with
        print(f"note: {len(unseen)} case(s) of {args.data} are not in this run's split "
              f"({', '.join(unseen[:5])}); train into a new --out to use them",
              file=sys.stderr)
    scored = split.get("test") or split["val"]
    report = predict_run(run.checkpoint_path("best"), args.data, run.path,
                         case_ids=scored, progress=not args.quiet,
                         cache_dir=cfg.data.cache_dir or default_cache_dir())
    _print_predict_report(report)
    if split.get("test"):
        print(f"test cases never seen in training or selection: n={len(scored)} (synthetic "
              f"demo cohort in {args.data}, the same generator as the training cases)")
    else:
        print(f"validation cases: {len(scored)} (synthetic demo cohort in {args.data}); "
              "they chose best.pt, so this is a validation figure, not a held-out test score")
    failed = len(report.failed) + _evaluate_and_print(run, quiet=args.quiet)
    print(f"run: {run.path}  — browse it with: streamlit run streamlit_app.py -- "
          f"--results {run.path}")
    return 1 if failed else 0


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
                                   "labels and faults. Exits 1 when any case is bad.")
    p.add_argument("folder", type=Path, help="dataset folder (or a single case folder)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo-data", help="generate the synthetic demo cohort (no download)",
                       description="Write N synthetic cases (tumours grown in the ICBM152 "
                                   "template shipped with nilearn) in BraTS 2021 layout.")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: new, empty, or a cohort demo-data wrote (never a "
                        "folder holding anything else, such as a real dataset)")
    p.add_argument("--cases", type=_int_in(1, 99999), default=20,
                   help="number of cases, 1 to 99999 (default 20)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="random seed >= 0 (default 0)")
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
    p.add_argument("--force", action="store_true", help="rebuild entries even if fresh")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("demo", help="the main job on the embedded demo cohort, end to end",
                       description="Build the synthetic demo cohort if missing, train the "
                                   "tiny-cpu preset on it (resuming an interrupted run), "
                                   "predict the validation cases, evaluate, print Dice.")
    p.add_argument("--data", type=Path, default=Path("demo_data"), help="cohort folder")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder")
    p.add_argument("--cases", type=_int_in(2, 99999), default=20,
                   help="cohort size, 2 to 99999 (default 20)")
    p.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0,
                   help="cohort seed >= 0 (default 0)")
    p.add_argument("--config", default="tiny-cpu", help="preset or YAML (default tiny-cpu)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help="override one config key (repeatable)")
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="segment every case of a folder with a checkpoint",
                       description="Sliding-window inference over each brain crop, mapped "
                                   "back to the source grid and written as NIfTI with the "
                                   "source affine and header. Scores the cases that have "
                                   "labels into metrics.csv. Finished cases are skipped.")
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoints/*.pt file")
    p.add_argument("--input", type=Path, required=True, help="dataset folder")
    p.add_argument("--out", type=Path, required=True, help="run folder to write into")
    p.add_argument("--cache", type=Path, default=None, help="preprocessing cache folder")
    p.add_argument("--overlap", type=_checked_as("train.overlap"), default=None,
                   help="window overlap in [0, 1)")
    p.add_argument("--mirror", action="store_true", help="mirroring test-time augmentation")
    p.add_argument("--save-probabilities", action="store_true",
                   help="also write <case>_prob.nii.gz with WT/TC/ET probabilities")
    p.add_argument("--device", type=_device, default="auto",
                   help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--split", choices=["train", "val", "test"], default=None,
                   help="only the cases of this set of the run's split.json (e.g. test: "
                        "the cases set aside by training)")
    p.add_argument("--force", action="store_true", help="predict finished cases again")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

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
                       description="Dice, IoU, HD95 (mm), sensitivity, specificity and volumes "
                                   "per case and region (WT, TC, ET).")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument("--labels", type=Path, default=None,
                   help="dataset folder with ground truth (default: the labels recorded "
                        "at prediction)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)
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
