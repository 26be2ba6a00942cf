"""Training curves of a run as a PNG (``RUN/curves.png``): loss, validation Dice, type scores."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tumorscope.core.data.nifti import atomic_path
from tumorscope.core.store import Run
from tumorscope.render.style import LOSS_COLOUR, REGION_COLOURS

CURVES_FILE = "curves.png"
TUMOUR_COLOUR = REGION_COLOURS["WT"]  # the 2-D track's one region is the whole tumour


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(_number(r.get("epoch")), _number(r.get(key))) for r in rows]
    points = [(e, v) for e, v in points if not math.isnan(e) and not math.isnan(v)]
    return [e for e, _ in points], [v for _, v in points]


def plot_curves(rows: Sequence[Mapping[str, Any]], path: str | Path, *,
                title: str = "") -> Path | None:
    """Draw log.csv ``rows`` into ``path`` (PNG, written atomically): training loss per
    epoch and validation loss on the left; validation Dice per region (and accuracy / macro
    F1 of the tumour type where logged) on the right, on a 0-1 axis. ``None`` when there is
    no row."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    epochs, loss = _series(rows, "loss")
    left.plot(epochs, loss, color=LOSS_COLOUR.hex, marker=".", label="training loss")
    e, v = _series(rows, "val_loss")
    if v:
        left.plot(e, v, color=LOSS_COLOUR.hex, marker="o", ms=3, ls="--",
                  label="validation loss")
    left.set_xlabel("epoch")
    left.set_ylabel("loss")
    left.grid(alpha=0.3)
    left.legend(loc="upper right", fontsize=8)
    keys = [k for k in rows[-1] if str(k).startswith("dice_") and k != "dice_mean"]
    for key in keys:
        region = key.removeprefix("dice_")
        e, v = _series(rows, key)
        right.plot(e, v, marker="o", ms=3, label=f"Dice {region}",
                   color=REGION_COLOURS[region].hex if region in REGION_COLOURS
                   else TUMOUR_COLOUR.hex)
    for key, colour in (("accuracy", "#7b3294"), ("macro_f1", "#e66101")):
        e, v = _series(rows, key)
        if v:
            right.plot(e, v, marker="s", ms=3, ls="--", color=colour,
                       label="type accuracy" if key == "accuracy" else "type macro F1")
    right.set_ylim(0, 1)
    right.set_xlabel("epoch")
    right.set_ylabel("validation score")
    right.grid(alpha=0.3)
    if right.lines:
        right.legend(loc="lower right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def write_run_curves(run: Run) -> Path | None:
    """``RUN/curves.png`` from the run's log.csv (``None`` when it has no epoch yet)."""
    return plot_curves(run.log_rows(), run.path / CURVES_FILE, title=run.name)
