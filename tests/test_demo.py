"""The demo cohort: BraTS 2021 files, nested labels, real contrasts, determinism, resuming."""

from __future__ import annotations

import csv
import doctest
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from builders import write_case
from scipy import ndimage as ndi

from tumorscope.core.data import synthetic as demo
from tumorscope.core.data.cases import check_case, discover
from tumorscope.core.data.synthetic import AFFINE, SHAPE, case_files, make_demo_cohort
from tumorscope.core.errors import ConfigError

MODALITIES = ("t1", "t1ce", "t2", "flair")
N_CASES = 3  # seed 0: a small, a cortical and a multifocal case


def _load(folder: Path) -> dict[str, np.ndarray]:
    return {k: np.asarray(nib.load(str(p)).dataobj) for k, p in case_files(folder).items()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("demo") / "cohort"
    return out, make_demo_cohort(out, n_cases=N_CASES, seed=0, progress=False)


@pytest.fixture(scope="module")
def cases(cohort: tuple[Path, list[Path]]) -> list[dict[str, np.ndarray]]:
    return [_load(folder) for folder in cohort[1]]


@pytest.fixture(scope="module")
def lgg_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    # Case 0 of seed 1 is dealt the LGG-like kind (kinds come from a shuffled block of ten).
    out = tmp_path_factory.mktemp("demo_seed1")
    folders = make_demo_cohort(out, n_cases=1, seed=1, progress=False)
    return out, _load(folders[0])


def test_files_names_geometry_and_dtypes(cohort: tuple[Path, list[Path]]) -> None:
    out, folders = cohort
    assert [f.name for f in folders] == ["TSDemo_00000", "TSDemo_00001", "TSDemo_00002"]
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            f"{folder.name}_{k}.nii.gz" for k in ("t1", "t1ce", "t2", "flair", "seg"))
        for key, path in case_files(folder).items():
            img = nib.load(str(path))
            assert img.shape == SHAPE == (240, 240, 155)
            np.testing.assert_array_equal(img.affine, AFFINE)
            assert img.header.get_zooms() == (1.0, 1.0, 1.0)
            assert img.get_data_dtype() == (np.uint8 if key == "seg" else np.int16)
    assert not list(out.rglob(".*tmp*")), "atomic writes left temporary files behind"


def test_labels_are_canonical_and_every_region_is_present(
        cases: list[dict[str, np.ndarray]]) -> None:
    for case in cases:
        values = set(np.unique(case["seg"]).tolist())
        assert values <= {0, 1, 2, 4}
        assert {0, 2, 4} <= values  # seed 0's first cases are all enhancing tumours
        wt_ml = np.count_nonzero(case["seg"]) / 1000.0
        assert 2.0 < wt_ml < 400.0


def test_labels_are_nested(cases: list[dict[str, np.ndarray]]) -> None:
    for case in cases:
        seg = case["seg"]
        brain = case["t1"] > 0
        core = np.isin(seg, (1, 4))
        # Edema wraps the core: a core voxel's neighbours are tumour or outside the brain.
        ring = ndi.binary_dilation(core) & brain
        assert np.all(seg[ring] > 0)
        # The enhancing rim wraps the necrosis: necrosis never touches edema or background.
        if (seg == 4).any():
            assert np.all(np.isin(seg[ndi.binary_dilation(seg == 1)], (1, 4)))
        # Edema surrounds the core, it is not a speck beside it.
        assert np.count_nonzero(seg == 2) > np.count_nonzero(core) * 0.3
        # Every piece of edema belongs to a lesion: each component of WT holds core.
        pieces, n = ndi.label(seg > 0)
        assert n >= 1
        assert set(np.unique(pieces[core]).tolist()) == set(range(1, n + 1))


def test_multifocal_case_has_two_lesions(cases: list[dict[str, np.ndarray]]) -> None:
    assert demo._kind(0, 2) == "multifocal"
    _, n_cores = ndi.label(np.isin(cases[2]["seg"], (1, 4)))
    _, n_cores_first = ndi.label(np.isin(cases[1]["seg"], (1, 4)))
    assert n_cores >= 2
    assert n_cores_first == 1


def test_images_are_zero_outside_the_brain(cases: list[dict[str, np.ndarray]]) -> None:
    for case in cases:
        support = case["t1"] > 0
        for m in MODALITIES:
            assert case[m].min() >= 0
            np.testing.assert_array_equal(case[m] > 0, support)  # one mask, skull-stripped
        assert not (case["seg"] > 0)[~support].any()
        brain_ml = np.count_nonzero(support) / 1000.0
        assert 1000.0 < brain_ml < 2100.0  # an adult brain, not the whole grid
        assert not support[:8].any() and not support[-8:].any()  # background margin
        assert not support[:, :8].any() and not support[:, -8:].any()
        # The brain is one solid piece: no holes (ventricles are kept, as in BraTS).
        assert np.array_equal(ndi.binary_fill_holes(support), support)


def _normal_white_matter(case: dict[str, np.ndarray]) -> np.ndarray:
    """Voxels far from the tumour that are the brightest third on T1: white matter."""
    brain = case["t1"] > 0
    far = ~ndi.binary_dilation(case["seg"] > 0, iterations=10) & brain
    return far & (case["t1"] > np.percentile(case["t1"][far], 67))


def test_contrasts_follow_glioma_appearance(cases: list[dict[str, np.ndarray]]) -> None:
    """Each case draws its own tissue contrasts (domain randomisation); what every glioma
    protocol agrees on holds in all of them."""
    for case in cases:
        seg = case["seg"]
        wm = _normal_white_matter(case)
        normal = (seg == 0) & (case["t1"] > 0)

        def mean(m: str, where: np.ndarray, case: dict[str, np.ndarray] = case) -> float:
            return float(case[m][where].astype(float).mean())

        edema, enhancing = seg == 2, seg == 4
        assert mean("flair", edema) > 1.2 * mean("flair", wm)
        assert mean("t2", edema) > 1.2 * mean("t2", wm)
        assert mean("t1", edema) < 0.97 * mean("t1", wm)
        assert mean("t1ce", enhancing) > 1.15 * mean("t1ce", wm)
        if (seg == 1).any():
            necrosis = seg == 1
            assert mean("t1ce", enhancing) > 1.3 * mean("t1ce", necrosis)
            assert mean("t2", necrosis) > 1.2 * mean("t2", wm)
        # CSF (the T1-darkest normal voxels) is bright on T2, whatever FLAIR makes of it.
        csf = normal & (case["t1"] < np.percentile(case["t1"][normal], 3))
        assert mean("t2", csf) > 1.3 * mean("t2", wm)


def test_contrasts_are_drawn_per_case_within_their_ranges() -> None:
    draws = [demo._draw_contrasts(np.random.default_rng(seed)) for seed in range(40)]
    flair_csf = [d["csf"][3] for d in draws]
    assert min(flair_csf) < 0.3 and max(flair_csf) > 1.0  # nulled to brighter than WM
    gm_t1 = [d["gm"][0] for d in draws]
    assert max(gm_t1) - min(gm_t1) > 0.25
    for d in draws:
        assert d["wm"] == (1.0, 1.0, 1.0, 1.0)
        assert d["edema"][2] >= 1.4 and d["edema"][3] >= 1.4 and d["edema"][0] <= 0.9
        assert d["csf"][2] >= 1.6 and d["csf"][0] <= 0.5 and d["cyst"][2] >= 2.0
        assert d["necrosis"][0] <= 0.6
        for name in ("enhancing", "vessel", "choroid"):  # gadolinium
            assert d[name][1] >= 1.15
        for name in ("gm", "csf", "edema", "necrosis", "solid", "cyst", "wmh"):
            assert 0.87 * d[name][0] <= d[name][1] <= 1.13 * d[name][0]
    assert demo._draw_contrasts(np.random.default_rng(3)) == draws[3]


def test_mimics_are_not_tumour_and_sit_where_they_belong() -> None:
    """Hyperintense white matter, choroid plexus and vessels: bright like tumour on some
    sequence, never labelled."""
    n = 48
    g = np.indices((n, n, n)).astype(np.float32) - (n - 1) / 2
    r = np.sqrt(np.sum(g**2, axis=0))
    brain = r < 0.45 * n
    vent = (r < 6).astype(np.float32)
    sulci = brain & (r > 0.45 * n - 5)
    wm = (brain & ~sulci & (vent == 0)).astype(np.float32)
    csf = (brain & (sulci | (vent > 0))).astype(np.float32)
    found = {"wmh": 0, "vessel": 0, "choroid": 0}
    for seed in range(6):
        parts = demo._mimics(np.random.default_rng(seed), csf, wm, brain, vent)
        assert not (parts["wmh"] > 0.05)[wm == 0].any()
        assert not (parts["vessel"] > 0.05)[~sulci].any()
        assert not (parts["choroid"] > 0.05)[vent == 0].any()
        assert (parts["vessel"] + parts["choroid"] <= csf + 1e-6).all()
        assert (parts["wmh"] <= wm + 1e-6).all()
        for k in found:
            found[k] += int(np.count_nonzero(parts[k] > 0.5))
    assert all(v > 50 for v in found.values()), found


def test_enhancing_structures_far_from_the_tumour(cases: list[dict[str, np.ndarray]]) -> None:
    """Choroid plexus and vessels enhance in every case: enhancement alone is not tumour."""
    for case in cases:
        brain = case["t1"] > 0
        far = ~ndi.binary_dilation(case["seg"] > 0, iterations=10) & brain
        wm = _normal_white_matter(case)
        bright = case["t1ce"][far] > 1.15 * np.median(case["t1ce"][wm])
        assert np.count_nonzero(bright) > 100


def test_lgg_like_case_has_no_enhancement(
        lgg_case: tuple[Path, dict[str, np.ndarray]]) -> None:
    out, case = lgg_case
    seg = case["seg"]
    assert set(np.unique(seg).tolist()) == {0, 1, 2}
    wm = _normal_white_matter(case)
    core = seg == 1
    assert case["t1ce"][core].mean() < case["t1ce"][wm].mean()  # nothing enhances
    assert case["flair"][core].mean() > 1.3 * case["flair"][wm].mean()
    with open(out / "name_mapping.csv", newline="") as fh:
        assert list(csv.DictReader(fh)) == [{"Grade": "LGG", "Subject_ID": "TSDemo_00000"}]


def test_same_seed_same_voxels_other_seed_other_voxels(
        tmp_path: Path, cases: list[dict[str, np.ndarray]],
        lgg_case: tuple[Path, dict[str, np.ndarray]]) -> None:
    again = _load(make_demo_cohort(tmp_path, n_cases=1, seed=0, progress=False)[0])
    for key in ("t1", "t1ce", "t2", "flair", "seg"):
        np.testing.assert_array_equal(again[key], cases[0][key])
    other = lgg_case[1]
    assert not np.array_equal(other["seg"], cases[0]["seg"])
    assert not np.array_equal(other["t1"], cases[0]["t1"])
    # Cases of one cohort differ from each other too.
    assert not np.array_equal(cases[0]["t2"], cases[1]["t2"])


def test_metadata_files(cohort: tuple[Path, list[Path]]) -> None:
    out, _ = cohort
    info = json.loads((out / "tumorscope_cohort.json").read_text())
    assert info == {"synthetic": True, "generator": "tumorscope demo-data", "seed": 0,
                    "n_cases": N_CASES, "style": "demo",
                    "case_ids": [f"TSDemo_{i:05d}" for i in range(N_CASES)],
                    "note": "synthetic tumours in ICBM152 anatomy, not patient data"}
    with open(out / "name_mapping.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Subject_ID"] for r in rows] == [f"TSDemo_{i:05d}" for i in range(N_CASES)]
    assert list(rows[0]) == ["Grade", "Subject_ID"]
    assert all(r["Grade"] == "HGG" for r in rows)
    with open(out / "survival_info.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["Subject_ID", "Age", "Survival_days"]
    for row in rows:
        assert 18.0 <= float(row["Age"]) <= 90.0
        assert int(row["Survival_days"]) > 0


def test_cohort_reads_back_as_synthetic_brats2021(cohort: tuple[Path, list[Path]]) -> None:
    out, _ = cohort
    found = discover(out)
    assert [c.case_id for c in found] == [f"TSDemo_{i:05d}" for i in range(N_CASES)]
    for case in found:
        assert case.layout == "brats2021"
        assert case.synthetic
        assert case.metadata["grade"] == "HGG"
        report = check_case(case)
        assert report.ok, report.faults
        assert report.warnings == (), report.warnings  # no outlier, background or emptiness


def test_a_real_case_copied_into_the_cohort_is_not_synthetic(
        cohort: tuple[Path, list[Path]], tmp_path: Path) -> None:
    """Before, the marker labelled every case of its folder synthetic, a copied-in patient
    scan too; now it lists the ids it wrote, and marks only those."""
    out = tmp_path / "cohort"
    shutil.copytree(cohort[0], out)
    write_case(out, "BraTS2021_00001")
    write_case(out, "TSDemo_00042")  # named like the demo, but not one the marker lists
    found = {c.case_id: c for c in discover(out)}
    assert {i: c.synthetic for i, c in found.items()} == {
        **{f"TSDemo_{i:05d}": True for i in range(N_CASES)},
        "BraTS2021_00001": False, "TSDemo_00042": False}


def test_existing_cases_are_skipped_and_partial_ones_completed(
        cohort: tuple[Path, list[Path]], cases: list[dict[str, np.ndarray]]) -> None:
    out, folders = cohort
    stamps = {p: p.stat().st_mtime_ns for f in folders for p in case_files(f).values()}
    missing = case_files(folders[1])["flair"]
    missing.unlink()
    # Mark the files of the complete cases so that a rewrite would show.
    past = 1_000_000_000
    for f in (folders[0], folders[2]):
        for p in case_files(f).values():
            os.utime(p, ns=(past, past))
    assert make_demo_cohort(out, n_cases=N_CASES, seed=0, progress=False) == folders
    for f in (folders[0], folders[2]):
        assert all(p.stat().st_mtime_ns == past for p in case_files(f).values())
    assert missing.is_file()
    assert stamps[case_files(folders[1])["t1"]] != case_files(folders[1])["t1"].stat().st_mtime_ns
    np.testing.assert_array_equal(_load(folders[1])["flair"], cases[1]["flair"])


def test_refuses_another_seed_in_the_same_folder(cohort: tuple[Path, list[Path]]) -> None:
    out, _ = cohort
    with pytest.raises(ConfigError, match="seed 0, got seed 5"):
        make_demo_cohort(out, n_cases=1, seed=5, progress=False)


@pytest.mark.parametrize("kwargs, message", [
    ({"n_cases": 0}, "n_cases must be an integer in 1..99999, got 0"),
    ({"n_cases": 2.5}, "n_cases must be an integer"),
    ({"seed": -1}, "seed must be a non-negative integer, got -1"),
])
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        make_demo_cohort(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_refuses_a_folder_holding_anything_it_did_not_write(tmp_path: Path) -> None:
    root = tmp_path / "brats"
    write_case(root, "BraTS2021_00000")
    (root / "name_mapping.csv").write_text("Grade,BraTS_2021_subject_ID\nHGG,BraTS2021_00000\n")
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match=r"holds 2 entries not written by tumorscope "
                                          r"demo-data \(BraTS2021_00000, name_mapping.csv\); "
                                          "choose an empty folder") as info:
        make_demo_cohort(root, n_cases=1, progress=False)
    assert info.value.path == root
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    # A marker some other tool wrote is not this generator's either.
    other = tmp_path / "other"
    other.mkdir()
    (other / "tumorscope_cohort.json").write_text('{"synthetic": true, "generator": "x"}')
    with pytest.raises(ConfigError, match=r"1 entry not written .*tumorscope_cohort.json"):
        make_demo_cohort(other, n_cases=1, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        make_demo_cohort(tmp_path / "file", n_cases=1, progress=False)


def test_rerun_on_its_own_finished_cohort_changes_nothing(
        cohort: tuple[Path, list[Path]]) -> None:
    out, folders = cohort
    # A killed writer's leftover temporary is this generator's own, not a foreign file.
    leftover = out / ".name_mapping.csv.host-1.k3j9x0q1.tmp.csv"
    leftover.write_text("partial")
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p != leftover}
    try:
        assert make_demo_cohort(out, n_cases=N_CASES, seed=0, progress=False) == folders
    finally:
        leftover.unlink()
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(ConfigError, match=f"holds a demo cohort of {N_CASES} cases"):
        make_demo_cohort(out, n_cases=N_CASES - 1, seed=0, progress=False)


def test_kinds_are_dealt_in_blocks_of_ten() -> None:
    assert {"lgg", "cystic", "periventricular", "cortical", "patchy", "multifocal"} <= set(
        demo._RECIPES["demo"].kinds)
    for seed in (0, 1, 7):
        kinds = [demo._kind(seed, i) for i in range(20)]
        for block in (kinds[:10], kinds[10:]):
            assert block.count("lgg") == 2
            assert block.count("small") == 1
            assert block.count("multifocal") == 2


def test_docstring_examples() -> None:
    result = doctest.testmod(demo, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
