"""The shifted synthetic style: an out-of-distribution cohort built differently from the demo's."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from tumorscope.app.cli import build_parser, main
from tumorscope.core.data import synthetic as syn
from tumorscope.core.data.cases import check_case, discover
from tumorscope.core.data.synthetic import (
    AFFINE,
    SHAPE,
    STYLES,
    case_files,
    case_id,
    make_demo_cohort,
)
from tumorscope.core.errors import ConfigError

MODALITIES = ("t1", "t1ce", "t2", "flair")
N_SHIFTED = 3  # seed 0: a standard, a cystic and a patchily enhancing case
N_DEMO = 2


def _load(folder: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(nib.load(str(p)).dataobj) for k, p in case_files(folder).items()}


@pytest.fixture(scope="module")
def shifted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("ood") / "shifted"
    assert main(["demo-data", "--out", str(out), "--cases", str(N_SHIFTED), "--style",
                 "shifted", "-q"]) == 0
    return out, sorted(p for p in out.iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def shifted_cases(shifted: tuple[Path, list[Path]]) -> list[dict[str, np.ndarray]]:
    return [_load(folder) for folder in shifted[1]]


@pytest.fixture(scope="module")
def demo_cases(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, np.ndarray]]:
    out = tmp_path_factory.mktemp("demo") / "cohort"
    return [_load(f) for f in make_demo_cohort(out, n_cases=N_DEMO, seed=0, progress=False)]


# ------------------------------------------------------------------ what every reader takes


def test_cli_writes_cases_that_check_accepts(shifted: tuple[Path, list[Path]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out, folders = shifted
    assert main(["check", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == f"{N_SHIFTED} case(s): {N_SHIFTED} ok, 0 bad"
    found = discover(out)
    assert [c.case_id for c in found] == [f.name for f in folders]
    for case in found:
        assert case.layout == "brats2021"
        assert case.synthetic
        report = check_case(case)
        assert report.ok, report.faults
        assert report.warnings == (), report.warnings


def test_same_layout_geometry_and_label_conventions_as_the_demo(
        shifted: tuple[Path, list[Path]], shifted_cases: list[dict[str, np.ndarray]]) -> None:
    for folder, case in zip(shifted[1], shifted_cases, strict=True):
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{folder.name}_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg"))
        for key, path in case_files(folder).items():
            img = nib.load(str(path))
            assert img.shape == SHAPE
            np.testing.assert_array_equal(img.affine, AFFINE)
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)  # resampled to the BraTS grid
            assert img.get_data_dtype() == (np.uint8 if key == "seg" else np.int16)
        seg = case["seg"]
        assert set(np.unique(seg).tolist()) <= {0, 1, 2, 4}
        support = case["t1"] > 0
        for m in MODALITIES:
            np.testing.assert_array_equal(case[m] > 0, support)  # skull-stripped, one mask
        assert not (seg > 0)[~support].any()
        assert 900.0 < np.count_nonzero(support) / 1000.0 < 2400.0
        # Every piece of the whole tumour holds tumour core, as BraTS labels do.
        core = np.isin(seg, (1, 4))
        pieces, n = ndi.label(seg > 0)
        assert n >= 1
        assert set(np.unique(pieces[core]).tolist()) == set(range(1, n + 1))
    assert not list(shifted[0].rglob(".*tmp*")), "atomic writes left temporary files behind"


def test_ids_marker_and_metadata_name_the_style(shifted: tuple[Path, list[Path]],
                                                tmp_path: Path) -> None:
    out, folders = shifted
    ids = [f"TSShift_{i:05d}" for i in range(N_SHIFTED)]
    assert [f.name for f in folders] == ids
    info = json.loads((out / "tumorscope_cohort.json").read_text())
    assert info == {"synthetic": True, "generator": "tumorscope demo-data", "seed": 0,
                    "n_cases": N_SHIFTED, "style": "shifted", "case_ids": ids,
                    "note": syn.NOTES["shifted"]}
    assert "never train on it" in info["note"]
    with open(out / "name_mapping.csv", newline="") as fh:
        assert [r["Subject_ID"] for r in csv.DictReader(fh)] == ids
    with open(out / "survival_info.csv", newline="") as fh:
        assert [r["Subject_ID"] for r in csv.DictReader(fh)] == ids
    # No id of one style is an id of the other, and neither style's folder pattern takes
    # the other's cases for its own.
    demo_ids = {case_id(i) for i in range(2000)}
    assert not demo_ids & {case_id(i, style="shifted") for i in range(2000)}
    assert not any(syn._CASE_RES["demo"].match(i) for i in ids)
    assert syn._CASE_RES["shifted"].match(ids[0])


def test_same_seed_same_voxels_and_no_draw_shared_with_the_demo(
        tmp_path: Path, shifted_cases: list[dict[str, np.ndarray]],
        demo_cases: list[dict[str, np.ndarray]]) -> None:
    again = _load(make_demo_cohort(tmp_path, n_cases=1, seed=0, style="shifted",
                                   progress=False)[0])
    for key in ("t1", "t1ce", "t2", "flair", "seg"):
        np.testing.assert_array_equal(again[key], shifted_cases[0][key])
    assert not np.array_equal(shifted_cases[0]["seg"], demo_cases[0]["seg"])
    assert not np.array_equal(shifted_cases[0]["seg"], shifted_cases[1]["seg"])
    # The streams of the two styles differ (a shared stream would give the same flips,
    # shifts and lesion sites to both cohorts of a seed).
    a = syn._rng(0, 0, 1, "demo").random(4)
    b = syn._rng(0, 0, 1, "shifted").random(4)
    assert not np.allclose(a, b)


# ------------------------------------------------------------ where the style differs


def _roughness(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Mean absolute second difference inside the brain along i, j and k."""
    inner = ndi.binary_erosion(brain, iterations=6)
    out = []
    for axis in range(3):
        d = np.abs(np.diff(image.astype(np.float32), n=2, axis=axis))
        keep = [slice(None)] * 3
        keep[axis] = slice(1, -1)
        out.append(float(d[inner[tuple(keep)]].mean()))
    return np.array(out)


def test_thick_slices_leave_one_axis_smooth(shifted_cases: list[dict[str, np.ndarray]],
                                            demo_cases: list[dict[str, np.ndarray]]) -> None:
    """T2 and FLAIR are always 2-D acquisitions (3-6 mm slices along a random axis),
    resampled to 1 mm: along the slice axis the image is far smoother than in plane. The
    demo's images are isotropic."""
    for case in demo_cases:
        for m in MODALITIES:
            r = _roughness(case[m], case["t1"] > 0)
            assert r.min() / r.max() > 0.7, (m, r)  # the anatomy's own orientation
    for case in shifted_cases:
        for m in ("t2", "flair"):
            r = _roughness(case[m], case["t1"] > 0)
            assert r.min() / r.max() < 0.5, (m, r)


def test_hyperintense_non_tumour_structures_on_t1ce(
        shifted_cases: list[dict[str, np.ndarray]],
        demo_cases: list[dict[str, np.ndarray]]) -> None:
    """Vessels and choroid plexus enhance far from any tumour in the shifted style (the
    demo's own enhancing mimics are tested in test_demo.py)."""
    def bright_far(case: dict[str, np.ndarray]) -> int:
        brain = case["t1"] > 0
        far = ~ndi.binary_dilation(case["seg"] > 0, iterations=10) & ndi.binary_erosion(
            brain, iterations=3)
        t1ce = case["t1ce"][far].astype(float)
        return int(np.count_nonzero(t1ce > 1.6 * np.median(t1ce)))

    assert all(bright_far(c) > 100 for c in shifted_cases)


def _phantom(n: int = 48) -> dict[str, np.ndarray]:
    """A ball of brain: white matter on one side, grey matter and CSF on the other."""
    g = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    brain = np.sqrt(np.sum(g**2, axis=0)) < 0.45 * n
    wm = ((g[0] < 0) & brain).astype(np.float32)
    gm = ((g[0] >= 0) & (g[1] < 0) & brain).astype(np.float32)
    csf = (g[0] >= 0) & (g[1] >= 0) & brain
    inner = ndi.binary_erosion(brain, iterations=5)
    where = {k: ndi.binary_erosion(m > 0, iterations=5) & inner
             for k, m in (("wm", wm), ("gm", gm), ("csf", csf))}
    return {"brain": brain, "wm": wm, "gm": gm, "csf": csf, **{f"in_{k}": v
                                                               for k, v in where.items()}}


def _phantom_images(style: str, seed: int, p: dict[str, np.ndarray]) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    seg = np.zeros((4, 4, 4), np.uint8)  # no tumour
    region = (slice(0, 4),) * 3
    none = np.zeros(p["brain"].shape, np.float32)
    if style == "demo":
        return syn._synthesise(rng, p["gm"], p["wm"], p["brain"], none, seg, region)
    return syn._synthesise_shifted(rng, p["gm"], p["wm"], p["brain"], none, none, seg, region)


def test_tissue_contrasts_change_from_case_to_case() -> None:
    """The shifted style's contrasts come from per-case relaxation times and protocols, the
    demo's from per-case random tissue means (domain randomisation, not those equations):
    in both, the same anatomy reads differently in each case."""
    p = _phantom()

    def ratios(style: str) -> np.ndarray:
        rows = []
        for seed in range(8):
            t1, _, t2, flair = _phantom_images(style, seed, p)
            rows.append([np.median(flair[p["in_csf"]]) / np.median(flair[p["in_wm"]]),
                         np.median(t1[p["in_gm"]]) / np.median(t1[p["in_wm"]]),
                         np.median(t2[p["in_csf"]]) / np.median(t2[p["in_wm"]])])
        return np.array(rows)

    demo, shifted = ratios("demo"), ratios("shifted")
    spread_demo = demo.max(0) - demo.min(0)
    spread_shifted = shifted.max(0) - shifted.min(0)
    assert spread_shifted[0] > 0.3 and spread_demo[0] > 0.3  # FLAIR CSF / WM
    assert spread_shifted[1] > 0.15 and spread_demo[1] > 0.15  # T1 GM / WM
    assert spread_demo[2] > 0.5  # T2 CSF / WM
    for ratios_ in (shifted, demo):
        assert (ratios_[:, 2] > 1.5).all()  # CSF stays bright on T2 whatever the protocol


def test_bias_field_is_stronger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Low-frequency intensity variation across pure white matter: bias field (plus ghosts),
    without the white-matter hyperintensities both styles may add."""

    def nothing(rng: np.random.Generator, csf: np.ndarray, *args: np.ndarray
                ) -> dict[str, np.ndarray]:
        return {k: np.zeros_like(csf) for k in ("wmh", "vessel", "choroid")}

    monkeypatch.setattr(syn, "_mimics", nothing)
    monkeypatch.setattr(syn, "_non_tumour_structures", nothing)
    n = 48
    g = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    brain = np.sqrt(np.sum(g**2, axis=0)) < 0.45 * n
    p = {"brain": brain, "wm": brain.astype(np.float32), "gm": np.zeros((n, n, n), np.float32),
         "csf": np.zeros((n, n, n), np.float32)}
    inner = ndi.binary_erosion(brain, iterations=4)

    def variation(style: str) -> list[float]:
        out = []
        for seed in range(8):
            images = _phantom_images(style, seed, p)
            out.append(float(np.mean([np.std(ndi.gaussian_filter(im, 3)[inner])
                                      / np.mean(im[inner]) for im in images])))
        return out

    demo, shifted = variation("demo"), variation("shifted")
    assert min(shifted) > 1.2 * max(demo)
    assert np.mean(shifted) > 1.4 * np.mean(demo)


def test_signal_equations() -> None:
    wm, gm, csf = (syn._TISSUE_MR[k] for k in ("wm", "gm", "csf"))
    # FLAIR at CSF's null point suppresses it; an inversion time short of it does not.
    tr = 9000.0
    null_ti = csf[0] * np.log(2.0 / (1.0 + np.exp(-tr / csf[0])))
    at_null = syn._Protocol("ir", tr_ms=tr, te_ms=100, ti_ms=float(null_ti))
    early = syn._Protocol("ir", tr_ms=tr, te_ms=100, ti_ms=2000)
    assert syn._signal(at_null, *csf) < 1e-6
    assert syn._signal(early, *csf) > 0.5 * syn._signal(early, *wm)
    # T2: CSF brightest, GM over WM. T1 spin echo: WM over GM over CSF.
    t2 = syn._Protocol("se", tr_ms=4000, te_ms=100)
    assert syn._signal(t2, *csf) > syn._signal(t2, *gm) > syn._signal(t2, *wm)
    t1 = syn._Protocol("se", tr_ms=500, te_ms=12)
    assert syn._signal(t1, *wm) > syn._signal(t1, *gm) > syn._signal(t1, *csf)
    # Gadolinium (a shorter T1) brightens enhancing tumour on every T1-weighted kind.
    t1_, t2_, pd = syn._TISSUE_MR["enhancing"]
    gd = 1000.0 / (1000.0 / t1_ + 1.2)
    for p in (t1, syn._Protocol("gre", tr_ms=8, te_ms=3, flip_deg=18),
              syn._Protocol("ir", tr_ms=2100, te_ms=3, ti_ms=1000)):
        assert syn._signal(p, gd, t2_, pd) > 1.2 * syn._signal(p, *wm)


def test_acquisition_blurs_the_slice_axis_ghosts_and_adds_noise() -> None:
    vol = np.zeros((60, 60, 60), np.float32)
    vol[20:40, 20:40, 20:40] = 1.0
    p = syn._Protocol("se", tr_ms=4000, te_ms=100, voxel_mm=(1.0, 1.0, 5.0), phase_axis=0,
                      ghost=0.05, snr=50.0)
    out = syn._acquire(np.random.default_rng(0), vol, p, np.ones_like(vol))
    assert out.shape == vol.shape
    edge_i = np.count_nonzero((out[10:50, 30, 30] > 0.2) & (out[10:50, 30, 30] < 0.8))
    edge_k = np.count_nonzero((out[30, 30, 10:50] > 0.2) & (out[30, 30, 10:50] < 0.8))
    assert edge_k >= 2 * max(edge_i, 1)  # 5 mm slices along k, 1 mm along i
    # The N/2 ghost: a faint copy of the cube half the field of view away along i.
    ghost = out[50:60, 25:35, 25:35].mean() - out[0:5, 0:10, 0:10].mean()
    assert 0.02 < ghost < 0.08
    # Rician noise in the flat inside of the cube: about 1 / snr.
    assert 0.005 < out[26:34, 26:34, 26:34].std() < 0.05


def test_non_tumour_structures_sit_where_they_belong() -> None:
    n = 48
    g = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    r = np.sqrt(np.sum(g**2, axis=0))
    brain = r < 0.45 * n
    vent = (r < 6).astype(np.float32)
    sulci = brain & (r > 0.45 * n - 5)  # CSF at the surface
    wm = (brain & ~sulci & (vent == 0)).astype(np.float32)
    csf = (brain & (sulci | (vent > 0))).astype(np.float32)
    choroid = vent * (g[1] < 0)
    for seed in range(4):
        parts = syn._non_tumour_structures(np.random.default_rng(seed), csf, wm, brain,
                                           vent, choroid)
        assert not (parts["wmh"] > 0.05)[wm == 0].any()
        assert not (parts["vessel"] > 0.05)[~sulci].any()
        assert not (parts["choroid"] > 0.05)[vent == 0].any()
        assert (parts["vessel"] + parts["choroid"] <= csf + 1e-6).all()


def test_lateral_ventricles_and_lesion_start_points() -> None:
    anatomy = syn._ventricle_anatomy()
    tmpl = syn._template()
    pieces, n = ndi.label(anatomy.ventricles > 0.5)
    assert n == 2
    volumes_ml = np.bincount(pieces.ravel())[1:] / 1000.0
    assert ((volumes_ml > 4) & (volumes_ml < 20)).all()
    sides = np.sign(anatomy.ventricle_centres[:, 0] - tmpl.centre[0])
    assert sorted(sides.tolist()) == [-1.0, 1.0]
    assert (anatomy.choroid <= anatomy.ventricles + 1e-6).all()
    for name in ("deep", "periventricular", "cortical"):
        assert len(anatomy.seed_pools[name]) > 100, name


def test_tumour_mix_and_label_statistics(shifted_cases: list[dict[str, np.ndarray]]) -> None:
    recipe = syn._RECIPES["shifted"]
    for seed in (0, 1, 7):
        kinds = [syn._kind(seed, i, "shifted") for i in range(20)]
        assert sorted(kinds[:10]) == sorted(kinds[10:]) == sorted(recipe.kinds)
    assert {"cystic", "lgg", "periventricular", "cortical", "patchy"} <= set(recipe.kinds)
    assert [syn._kind(0, i, "shifted") for i in range(N_SHIFTED)] == [
        "standard", "cystic", "patchy"]
    assert syn._case_meta(0, 0, "shifted").grade == "HGG"
    lgg = next(i for i in range(10) if syn._kind(0, i, "shifted") == "lgg")
    assert syn._case_meta(0, lgg, "shifted").grade == "LGG"
    _, cystic, patchy = (c["seg"] for c in shifted_cases)
    tc = np.isin(cystic, (1, 4))
    assert np.count_nonzero(cystic == 1) > 0.45 * np.count_nonzero(tc)  # a large fluid core
    # A patchy rim: non-enhancing core (label 1) touches the edema, which the demo's
    # necrosis never does (it always lies inside its enhancing rim).
    assert np.count_nonzero(ndi.binary_dilation(patchy == 1) & (patchy == 2)) > 100
    assert np.count_nonzero(patchy == 4) > 1000


# ------------------------------------------------------------------ refusals


def test_bad_style_is_a_one_line_error(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match=r"^style must be one of \['demo', 'shifted'\], "
                                          r"got 'ood'$"):
        make_demo_cohort(tmp_path / "x", n_cases=1, style="ood", progress=False)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["demo-data", "--out", str(tmp_path / "y"), "--style", "ood"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tumorscope demo-data: error:"), err
    assert "--style" in err[-1] and "'ood'" in err[-1] and "'shifted'" in err[-1]
    assert not (tmp_path / "y").exists()
    # The command line offers exactly the generator's styles.
    sub = next(a for a in build_parser()._actions if hasattr(a, "choices") and a.choices
               and "demo-data" in a.choices)
    style = next(a for a in sub.choices["demo-data"]._actions if a.dest == "style")
    assert tuple(style.choices) == STYLES


def test_refuses_to_mix_styles_in_one_folder(shifted: tuple[Path, list[Path]]) -> None:
    out, _ = shifted
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="holds a cohort of style 'shifted', got style 'demo'"):
        make_demo_cohort(out, n_cases=N_SHIFTED, seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in before} == before
