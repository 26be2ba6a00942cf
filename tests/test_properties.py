"""Property-based checks: any bytes in a run's tables and any value in a config either load or
are refused with a named error, never a crash or a silent wrong value."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tumorscope.core.config import ConfigError, config_from_dict, load_config, rules
from tumorscope.core.errors import LayoutError
from tumorscope.core.store import NUMERIC_METRIC_COLUMNS, Run

PROPERTY = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

HEADER = "case_id,region,dice,hd95_monai_mm,status\n"
GOOD_ROW = "BraTS2021_00000,WT,0.91,2.5,ok\n"


@PROPERTY
@given(junk=st.binary(max_size=200), where=st.integers(0, len(HEADER + GOOD_ROW)))
def test_any_damage_to_metrics_csv_loads_or_is_named(tmp_path: Path, junk: bytes,
                                                     where: int) -> None:
    text = (HEADER + GOOD_ROW).encode()
    run = Run(tmp_path)
    run.metrics_path.write_bytes(text[:where] + junk + text[where:])
    try:
        rows = run.metrics_rows()
    except LayoutError as exc:
        assert exc.path == run.metrics_path and "\n" not in str(exc)
        return
    for row in rows:  # what loads is well-formed: every number column holds a number
        for key in NUMERIC_METRIC_COLUMNS:
            value = row.get(key)
            assert value is None or (isinstance(value, int | float)
                                     and not isinstance(value, bool))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12)


@PROPERTY
@given(entry=json_values, key=st.sampled_from(
    ["images", "label", "metadata", "provenance", "prediction", "layout", None]))
def test_any_shape_of_cases_json_loads_or_is_named(tmp_path: Path, entry: object,
                                                   key: str | None) -> None:
    record = {"images": {"t1": "/x/A_t1.nii.gz"}, "label": None}
    if key is None:
        content: object = {"A": entry}
    else:
        content = {"A": {**record, key: entry}}
    run = Run(tmp_path)
    run.cases_path.write_text(json.dumps(content))
    try:
        records = run.case_records()
    except LayoutError as exc:
        assert exc.path == run.cases_path
        return
    rec = records["A"]
    assert all(isinstance(p, Path) for p in rec.images.values())
    assert rec.label is None or isinstance(rec.label, Path)


config_values = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
                 | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
                 | st.lists(st.integers(-5, 300), max_size=4))


@PROPERTY
@given(key=st.sampled_from(sorted(rules())), value=config_values)
def test_any_value_for_any_key_is_valid_or_refused_by_its_key(key: str, value: object) -> None:
    raw = load_config("tiny-cpu").to_dict()
    section, name = key.split(".")
    raw[section][name] = value
    try:
        cfg = config_from_dict(raw, source="test.yaml")
    except ConfigError as exc:
        assert key in str(exc) or section in str(exc), (key, value, str(exc))
        return
    got = getattr(getattr(cfg, section), name)
    if isinstance(got, float):
        assert math.isfinite(got)
    # YAML reads a bare `off` / `on` as a boolean: a key whose choices hold that word takes
    # it as the word (train.amp, data.bias_correction); any other bool stays a bool.
    if isinstance(value, bool) and not isinstance(got, bool):
        assert got == ("on" if value else "off"), (key, value, got)


def test_a_runs_config_yaml_can_be_trained_from(tmp_path: Path) -> None:
    """config.yaml of a predicted run carries a `predict` record; it is not a setting."""
    raw = load_config("tiny-cpu").to_dict()
    path = tmp_path / "config.yaml"
    Run(tmp_path).write_config({**raw, "predict": {"checkpoint": "x.pt", "overlap": 0.5}})
    assert load_config(path).to_dict() == raw
    with pytest.raises(ConfigError, match="unknown section"):
        config_from_dict({**raw, "predictt": {}})
