"""CPU work over worker processes: the demo cohort and its preprocessing come out the same
bytes as in one process, a bad case still fails alone and in its own words."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tumorscope.core import workers
from tumorscope.core.data.cases import discover
from tumorscope.core.data.preprocess import preprocess_cases
from tumorscope.core.data.synthetic import make_demo_cohort
from tumorscope.core.errors import ConfigError, TumorscopeError


def _pid_or_fail(item: int) -> int:
    if item == 3:
        raise ValueError("three is refused")
    return os.getpid()


def test_each_item_once_with_its_result_or_its_error() -> None:
    outcomes = dict(workers.each_in_workers(_pid_or_fail, list(range(6))))
    assert sorted(outcomes) == list(range(6))
    assert isinstance(outcomes[3], ValueError) and "three" in str(outcomes[3])
    pids = {v for k, v in outcomes.items() if k != 3}
    if workers.usable_cpus() >= 2:  # the work left this process
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}


def test_worker_count_follows_items_cores_and_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert workers.worker_count(workers.MIN_ITEMS - 1) == 1
    monkeypatch.setenv(workers.WORKERS_ENV, "1")
    assert workers.worker_count(100) == 1
    monkeypatch.delenv(workers.WORKERS_ENV)
    assert workers.worker_count(100) == workers.usable_cpus()
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(workers.WORKERS_ENV, bad)
        with pytest.raises(ConfigError, match=rf"TUMORSCOPE_WORKERS must be .* got '{bad}'"):
            workers.worker_count(100)


def _digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("workers")
    make_demo_cohort(root / "parallel", n_cases=3, seed=4, progress=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(workers.WORKERS_ENV, "1")
        make_demo_cohort(root / "serial", n_cases=3, seed=4, progress=False)
    return root / "parallel", root / "serial"


def test_cohort_from_workers_is_the_same_bytes(cohorts: tuple[Path, Path]) -> None:
    parallel, serial = cohorts
    digests = _digests(parallel)
    assert len([k for k in digests if k.endswith(".nii.gz")]) == 3 * 5
    assert digests == _digests(serial)


def test_preprocessing_in_workers_equals_one_process_and_a_bad_case_fails_alone(
        cohorts: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    shutil.copytree(cohorts[0], data)
    broken = next(data.glob("TSDemo_00001/*_t2.nii.gz"))
    broken.write_bytes(broken.read_bytes()[:4000])  # truncated gzip
    cases = discover(data)
    with caplog.at_level(logging.INFO, logger="tumorscope.core.data.preprocess"):
        built = preprocess_cases(cases, tmp_path / "a", target_spacing_mm=2.0)
    if workers.usable_cpus() >= 2:  # the entries were built out of this process
        assert "preprocessed 3 case(s) in 2 worker process(es)" in caplog.text, caplog.text
    alone = preprocess_cases(cases, tmp_path / "b", target_spacing_mm=2.0, workers=False)
    assert [c.case_id for c, _ in built] == [c.case_id for c in cases]
    for (case, a), (_, b) in zip(built, alone, strict=True):
        if case.case_id == "TSDemo_00001":
            assert isinstance(a, TumorscopeError) and str(a) == str(b)
            assert str(broken) in str(a)
        else:
            np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))
            np.testing.assert_array_equal(np.asarray(a.label), np.asarray(b.label))
