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
