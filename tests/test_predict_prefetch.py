"""predict reads the next case while it infers this one: the overlap happens, and a case that
fails to read does not stop the others or leave anything of itself in the run."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from builders import TINY_SHAPE, train_tiny, write_case

from tumorscope.core.prediction import predict as predict_module
from tumorscope.core.prediction.predict import predict_run
from tumorscope.core.store import Run

CASES = [f"BraTS2021_{i:05d}" for i in range(3)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    run, root, cache = train_tiny(tmp_path_factory, "prefetch", n_cases=len(CASES))
    return run.checkpoint_path("best"), root, cache


def test_the_next_case_is_read_while_this_one_is_inferred(
    trained: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint, root, cache = trained
    started: dict[str, threading.Event] = {c: threading.Event() for c in CASES}
    readers: dict[str, str] = {}
    real_preprocess, real_infer = predict_module.preprocess_case, predict_module.predict_case

    def preprocess(case, *args, **kwargs):
        readers[case.case_id] = threading.current_thread().name
        started[case.case_id].set()
        return real_preprocess(case, *args, **kwargs)

    order: list[str] = []  # one entry per inference, in the order they ran

    def infer(model, cached, **kwargs):
        index = len(order)
        order.append(str(index))
        if index + 1 < len(CASES):
            # Without reading ahead, the next case would only be read after this returns.
            assert started[CASES[index + 1]].wait(timeout=60), \
                "the next case was not read while this one was inferred"
        return real_infer(model, cached, **kwargs)

    monkeypatch.setattr(predict_module, "preprocess_case", preprocess)
    monkeypatch.setattr(predict_module, "predict_case", infer)
    report = predict_run(checkpoint, root, tmp_path / "pred", cache_dir=cache, progress=False)
    assert sorted(report.predicted) == CASES and not report.failed
    assert len(order) == len(CASES)
    assert all(name.startswith("tumorscope-prefetch") for name in readers.values()), readers
    assert Run(tmp_path / "pred").case_ids() == CASES


def test_a_case_that_cannot_be_read_fails_alone(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    checkpoint, root, cache = trained
    data = tmp_path / "data"
    for i, case_id in enumerate(CASES):
        write_case(data, case_id, shape=TINY_SHAPE, seed=i)
    broken = data / CASES[1] / f"{CASES[1]}_t2.nii.gz"
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated gzip
    report = predict_run(checkpoint, data, tmp_path / "pred", cache_dir=cache,
                         progress=False)
    assert sorted(report.predicted) == [CASES[0], CASES[2]]
    (line,) = report.failed
    assert line.startswith(f"{CASES[1]}: ") and broken.name in line, line
    run = Run(tmp_path / "pred")
    assert run.case_ids() == [CASES[0], CASES[2]]
    assert not run.prediction_path(CASES[1]).exists()
