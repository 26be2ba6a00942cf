"""Save a PNG of a few demo cases: axial slices through each tumour, every modality, labels.

    python benchmarks/look_demo.py --out /tmp/demo_look.png            # generates 4 cases
    python benchmarks/look_demo.py --out look.png --data demo_data --cases 20 --show 0,2,7

Rows are cases; columns T1, T1ce, T2, FLAIR with the label outlines, then FLAIR with the
labels filled (edema green, necrotic core red, enhancing yellow). Slices are shown in the
radiological convention: patient right on the left of the image, anterior at the top.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: a file is written, no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from tumorscope.core.data.nifti import read_nifti  # noqa: E402
from tumorscope.core.data.synthetic import case_files, make_demo_cohort  # noqa: E402
from tumorscope.render.style import LABEL_COLOURS as STYLE_LABEL_COLOURS  # noqa: E402

MODALITIES = ("t1", "t1ce", "t2", "flair")
# The project's one home for label colours: edema green, necrotic core red, enhancing yellow.
LABEL_COLOURS = {label: colour.hex for label, colour in STYLE_LABEL_COLOURS.items()}


def tumour_slice(seg: np.ndarray) -> int:
    """Axial index through the tumour core's centre of mass (whole tumour if no core)."""
    for mask in (np.isin(seg, (1, 4)), seg > 0):
        if mask.any():
            return int(round(np.argwhere(mask)[:, 2].mean()))
    return seg.shape[2] // 2


def draw_case(axes: np.ndarray, folder: Path) -> None:
    files = case_files(folder)
    seg = read_nifti(files["seg"], dtype=np.uint8).data
    images = {m: read_nifti(files[m]).data for m in MODALITIES}
    k = tumour_slice(seg)
    brain = images["t1"][:, :, k] > 0
    nz = np.argwhere(brain) if brain.any() else np.argwhere(np.ones_like(brain))
    (i0, j0), (i1, j1) = nz.min(0) - 4, nz.max(0) + 5
    crop = (slice(max(i0, 0), i1), slice(max(j0, 0), j1))
    label = seg[:, :, k][crop].T
    for ax, m in zip(axes, (*MODALITIES, "flair"), strict=True):
        img = images[m][:, :, k][crop].T
        inside = img[img > 0]
        vmax = float(np.percentile(inside, 99.5)) if inside.size else 1.0
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if ax is axes[-1]:
            colours = ["none"] + [LABEL_COLOURS[v] for v in (1, 2, 4)]
            index = np.select([label == 1, label == 2, label == 4], [1, 2, 3], 0)
            overlay = np.ma.masked_equal(index, 0)
            ax.imshow(overlay, cmap=ListedColormap(colours), vmin=0, vmax=3, alpha=0.55,
                      interpolation="nearest")
        else:
            for value in (2, 4, 1):  # outer first, so inner outlines stay on top
                colour = LABEL_COLOURS[value]
                if (label == value).any():
                    ax.contour(label == value, levels=[0.5], colors=colour, linewidths=1.1)
    axes[0].set_ylabel(f"{folder.name}\nz={k}", fontsize=8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--data", type=Path, default=None,
                        help="cohort folder to read, completed up to --cases if short "
                             "(default: a temporary folder)")
    parser.add_argument("--cases", type=int, default=4,
                        help="cohort size to generate or complete (default 4)")
    parser.add_argument("--show", type=str, default=None,
                        help="comma-separated case indices to draw (default: every case)")
    parser.add_argument("--seed", type=int, default=0, help="cohort seed (default 0)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data if args.data is not None else Path(tmp)
        start = time.perf_counter()
        folders = make_demo_cohort(data, n_cases=args.cases, seed=args.seed)
        print(f"{len(folders)} case(s) ready in {time.perf_counter() - start:.1f} s")
        if args.show:
            folders = [folders[int(i)] for i in args.show.split(",")]
        titles = ["T1", "T1ce", "T2", "FLAIR", "FLAIR + labels"]
        fig, axes = plt.subplots(len(folders), len(titles),
                                 figsize=(2.4 * len(titles), 2.6 * len(folders)),
                                 squeeze=False, facecolor="black")
        for row, folder in zip(axes, folders, strict=True):
            draw_case(row, folder)
        for ax, title in zip(axes[0], titles, strict=True):
            ax.set_title(title, color="white", fontsize=10)
        for ax in axes[:, 0]:
            ax.yaxis.label.set_color("white")
        fig.suptitle("Tumorscope demo cohort (synthetic): edema green, necrotic core red, "
                     "enhancing yellow", color="white", fontsize=10)
        fig.tight_layout()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out, dpi=110, facecolor="black")
    print(f"figure written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
