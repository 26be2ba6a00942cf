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

from tumorscope.core.errors import TumorscopeError

Command = Callable[[argparse.Namespace], int]


def _fmt_shape(shape: Sequence[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else "?"


def cmd_check(args: argparse.Namespace) -> int:
    from tumorscope.core.cases import check_case, discover

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
        for warning in case.warnings:
            print(f"    warning: {warning}")
        for fault in report.faults:
            print(f"    fault: {fault.path}: {fault.message}")
        bad += not report.ok
    print(f"{len(cases)} case(s): {len(cases) - bad} ok, {bad} bad")
    return 1 if bad else 0


def cmd_demo_data(args: argparse.Namespace) -> int:
    from tumorscope.core.demo import make_demo_cohort

    folders = make_demo_cohort(args.out, n_cases=args.cases, seed=args.seed,
                               progress=not args.quiet)
    print(f"{len(folders)} synthetic case(s) in {Path(args.out).resolve()}")
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tumorscope.core.cache import default_cache_dir, preprocess_case
    from tumorscope.core.cases import discover

    cache_dir = Path(args.cache) if args.cache else default_cache_dir()
    cases = discover(args.folder)
    failed: list[str] = []
    for case in tqdm(cases, desc="preprocess", unit="case", disable=args.quiet):
        try:
            preprocess_case(case, cache_dir, spacing_mm=args.spacing_mm, force=args.force)
        except TumorscopeError as exc:
            failed.append(f"{case.case_id}: {exc}")
    for line in failed:
        print(f"skipped {line}", file=sys.stderr)
    print(f"{len(cases) - len(failed)} case(s) cached in {cache_dir}, {len(failed)} skipped")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tumorscope",
        description="3D brain-tumour MRI segmentation: check data, make the demo cohort, "
                    "train, predict, render, browse.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="check a folder of BraTS cases and report every fault",
                       description="Find every case below FOLDER (BraTS 2020, 2021 or 2023 "
                                   "layout), read it and print its layout, shape, spacing, "
                                   "labels and faults. Exits 1 when any case is bad.")
    p.add_argument("folder", type=Path, help="dataset folder (or a single case folder)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo-data", help="generate the synthetic demo cohort (no download)",
                       description="Write N synthetic cases (tumours grown in the ICBM152 "
                                   "template shipped with nilearn) in BraTS 2021 layout.")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--cases", type=int, default=20, help="number of cases (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("preprocess", help="crop, normalise and cache every case once",
                       description="Crop each case to the brain, z-score each channel over "
                                   "brain voxels and cache it as .npy with its crop box and "
                                   "affine. Entries are rebuilt when a source file changes.")
    p.add_argument("folder", type=Path, help="dataset folder")
    p.add_argument("--cache", type=Path, default=None,
                   help="cache folder (default $TUMORSCOPE_CACHE or ~/.cache/tumorscope)")
    p.add_argument("--spacing-mm", type=float, default=None,
                   help="resample to this isotropic spacing after cropping (default: keep)")
    p.add_argument("--force", action="store_true", help="rebuild entries even if fresh")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_preprocess)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tumorscope`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except TumorscopeError as exc:
        print(f"tumorscope {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tumorscope {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
