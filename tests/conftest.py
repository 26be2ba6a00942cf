"""Shared fixtures: small real NIfTI cases written in each BraTS layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import write_case


@pytest.fixture
def brats2021_root(tmp_path: Path) -> Path:
    root = tmp_path / "brats2021"
    for i in range(2):
        write_case(root, f"BraTS2021_{i:05d}", seed=i)
    return root


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and every subprocess it starts) caches in a temp folder of its own, never
    in the user's ~/.cache/tumorscope; a test that names a cache folder still gets that one."""
    monkeypatch.setenv("TUMORSCOPE_CACHE", str(tmp_path_factory.mktemp("tumorscope_cache")))
    # matplotlib's font cache would otherwise land in ~/.cache/matplotlib on a fresh machine.
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path_factory.getbasetemp() / "matplotlib"))
