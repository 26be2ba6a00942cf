"""The layer rules hold: import-linter's contracts in pyproject.toml, checked on every run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    """app -> render -> core; core by stage without circles; torch only in models, training
    and prediction (so `tumorscope check`, render and the app start without it)."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
         " sys.exit(lint_imports_command())"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "4 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def test_check_and_the_app_modules_start_without_torch() -> None:
    code = ("import sys, tumorscope.app.tables, tumorscope.app.volumes, tumorscope.app.meshes,"
            " tumorscope.app.pages.overview, tumorscope.render.layers,"
            " tumorscope.core.data.cases, tumorscope.core.scoring.evaluate;"
            " print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.stdout.strip() == "False", proc.stderr[-2000:]
