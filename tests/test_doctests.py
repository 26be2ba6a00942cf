"""The examples in every docstring of the three packages run and hold (collected, not listed)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import tumorscope.app
import tumorscope.core
import tumorscope.render


def _modules() -> list[str]:
    names = []
    for package in (tumorscope.core, tumorscope.render, tumorscope.app):
        for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
            names.append(info.name)
    return sorted(names)


MODULES = _modules()
WITH_EXAMPLES = [m for m in MODULES
                 if doctest.DocTestFinder().find(importlib.import_module(m))
                 and any(t.examples for t in doctest.DocTestFinder().find(
                     importlib.import_module(m)))]


def test_every_module_is_found() -> None:
    assert "tumorscope.core.store" in MODULES and "tumorscope.app.cli" in MODULES
    assert len(WITH_EXAMPLES) >= 10


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
