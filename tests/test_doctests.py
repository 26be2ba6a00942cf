"""The examples in the docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "tumorscope.core.labels",
    "tumorscope.core.nifti",
    "tumorscope.core.preprocess",
    "tumorscope.core.config",
    "tumorscope.core.errors",
    "tumorscope.core.infer",
    "tumorscope.core.metrics",
    "tumorscope.core.train",
    "tumorscope.core.fingerprint",
    "tumorscope.core.geometry",
    "tumorscope.core.store",
    "tumorscope.core.oserrors",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
