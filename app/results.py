"""Where the results are: the folder the app opens first, and the runs found in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tumorscope.core.errors import TumorscopeError
from tumorscope.core.store import Run, open_runs

DEFAULT_RESULTS = Path("runs")
"""Where ``tumorscope demo`` writes (``runs/demo``), relative to the working directory."""
RESULTS_ENV = "TUMORSCOPE_RESULTS"
BUILD_COMMAND = "tumorscope demo"


def results_arg(argv: Sequence[str]) -> str | None:
    """The value of ``--results DIR`` or ``--results=DIR`` in ``argv`` (the args after ``--``).

    Scanned by hand rather than with argparse: Streamlit and pytest put their own arguments
    in ``sys.argv`` and argparse would exit on ones it does not know.

    >>> results_arg(["--results", "out/runs"]), results_arg(["--results=R"]), results_arg([])
    ('out/runs', 'R', None)
    """
    for i, arg in enumerate(argv):
        if arg == "--results" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--results="):
            return arg.split("=", 1)[1]
    return None


def initial_results_dir(argv: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str]:
    """The folder to open first and where it came from: ``--results``, then the env, then runs/.

    >>> initial_results_dir([], {})
    ('runs', 'default')
    >>> initial_results_dir(["--results", "R"], {"TUMORSCOPE_RESULTS": "E"})
    ('R', '--results')
    """
    from_arg = results_arg(argv)
    if from_arg:
        return from_arg, "--results"
    if environ.get(RESULTS_ENV):
        return environ[RESULTS_ENV], RESULTS_ENV
    return str(DEFAULT_RESULTS), "default"


@dataclass(frozen=True)
class Results:
    """The runs found in a results folder, or the one-line reason there are none."""

    root: Path
    runs: tuple[Run, ...] = ()
    problem: str | None = None

    def run(self, name: str | None) -> Run | None:
        return next((r for r in self.runs if r.name == name), self.runs[0] if self.runs else None)


def find_results(folder: str) -> Results:
    """Open ``folder`` (one run or a folder of runs); never raises, the problem is a sentence."""
    text = folder.strip()
    if not text:
        return Results(Path("."), problem="Enter a results folder in the sidebar.")
    root = Path(text).expanduser()
    if not root.exists() and root == DEFAULT_RESULTS:
        return Results(root, problem=(
            f"No results yet: the default folder `{root}/` does not exist in {Path.cwd()}. "
            f"Build the demo results with `{BUILD_COMMAND}`, or enter another folder in the "
            "sidebar."))
    try:
        runs = open_runs(root)
    except TumorscopeError as exc:
        return Results(root, problem=f"Cannot open results `{root}`: {exc.fault}.")
    except OSError as exc:  # permission denied and the like
        return Results(root, problem=f"Cannot read results `{root}`: {exc.strerror or exc}.")
    return Results(root, tuple(runs))
