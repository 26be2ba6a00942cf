"""Bad numbers and options are refused before any work starts, by the key or flag as written.

Two layers: fast in-process checks of the one validation path (``config_from_dict`` and
the rules on the config dataclasses), and the real ``tumorscope`` command run as a
subprocess against a tiny real cohort, asserting exit code 2, one error line naming the key
and the value, no traceback, and that nothing was written (no run folder, checkpoint, cache
or file under ``$HOME``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any, get_type_hints

import pytest
import yaml
from builders import write_case

from tumorscope.app.cli import main
from tumorscope.core.config import (
    PRESETS,
    SECTIONS,
    Config,
    Kind,
    config_from_dict,
    load_config,
    preset_text,
    rules,
    show,
)
from tumorscope.core.errors import ConfigError
from tumorscope.core.models.checks import check_model_and_loss
from tumorscope.core.training.train import check_before_training

# ---------------------------------------------------------------- in process: the rules


def _raw(dotted: str, value: Any) -> dict[str, Any]:
    """The tiny-cpu preset as plain values with ``dotted`` set to ``value``."""
    raw = yaml.safe_load(preset_text("tiny-cpu"))
    node = raw
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return raw


def _refused(dotted: str, value: Any, *, shown: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(_raw(dotted, value), source="bad.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert dotted in message, message
    assert (shown if shown is not None else show(value)) in message, message
    assert "must" in message or "unknown" in message, message
    return message


def test_every_field_has_a_rule_and_every_default_and_preset_passes() -> None:
    described = rules()
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            assert "rule" in f.metadata, f"{name}.{f.name} has no rule"
            assert described[f"{name}.{f.name}"]
    config_from_dict(Config().to_dict())
    for preset in PRESETS:
        cfg = load_config(preset)
        assert config_from_dict(yaml.safe_load(cfg.to_yaml())) == cfg


def _fields_of(kind: type) -> list[str]:
    out = []
    for name, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        out += [f"{name}.{f.name}" for f in fields(cls) if Kind.of(hints[f.name]).base is kind]
    return out


@pytest.mark.parametrize("dotted", _fields_of(float))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, "many", [0.5]])
def test_every_float_refuses_nan_inf_booleans_and_text(dotted: str, value: Any) -> None:
    _refused(dotted, value)


@pytest.mark.parametrize("dotted", _fields_of(int))
@pytest.mark.parametrize("value", [True, False, 1.5, math.nan, "many", [1]])
def test_every_integer_refuses_booleans_fractions_and_text(dotted: str, value: Any) -> None:
    _refused(dotted, value)


@pytest.mark.parametrize("dotted", _fields_of(bool))
@pytest.mark.parametrize("value", [2, 0, 1, 0.5, "maybe", None])
def test_every_boolean_refuses_numbers_and_text(dotted: str, value: Any) -> None:
    _refused(dotted, value)


@pytest.mark.parametrize(
    ("dotted", "value", "allowed"),
    [
        ("train.epochs", 0, ">= 1"),
        ("train.epochs", -3, ">= 1"),
        ("train.steps_per_epoch", 0, ">= 1"),
        ("train.val_every_epochs", 0, ">= 1"),
        ("train.sw_batch_size", 0, ">= 1"),
        ("train.threads", 0, ">= 1"),
        ("train.val_cases", 0, ">= 1"),
        ("train.ema", 0, "> 0 and < 1"),
        ("train.ema", 1.0, "> 0 and < 1"),
        ("train.overlap", 1, ">= 0 and < 1"),
        ("train.overlap", -0.1, ">= 0 and < 1"),
        ("train.seed", -1, ">= 0"),
        ("train.device", "foo", "auto, cpu, cuda, cuda:N or mps"),
        ("train.device", "cuda:x", "cuda:N"),
        ("train.device", "CPU", "cpu"),
        ("train.amp", "fp8", "['auto', 'bf16', 'fp16', 'off']"),
        ("data.batch_size", 0, ">= 1"),
        ("data.num_workers", -1, ">= 0"),
        ("data.patch_size_vox", [16, 16], "3 integers"),
        ("data.patch_size_vox", [16, 16, 16, 16], "3 integers"),
        ("data.patch_size_vox", [16, 0, 16], ">= 1"),
        ("data.patch_size_vox", 100000, "<= 1024"),
        ("data.spacing_mm", 0, ">= 0.25 and <= 10 mm"),
        ("data.spacing_mm", -1.0, ">= 0.25"),
        ("data.spacing_mm", 50, "<= 10 mm"),
        ("data.val_fraction", 1, "> 0 and < 1"),
        ("data.foreground_fraction", 1.5, ">= 0 and <= 1"),
        ("data.split_seed", -2, ">= 0"),
        ("data.root", "", "non-empty"),
        ("optim.lr", -1e-3, "> 0"),
        ("optim.lr", 0, "> 0"),
        ("optim.weight_decay", -1, ">= 0"),
        ("optim.momentum", 1.0, "> 0 and < 1"),
        ("optim.momentum", 0, "> 0 and < 1"),
        ("optim.grad_clip", -1, "> 0, or null"),
        ("optim.warmup_steps", -5, ">= 0"),
        ("optim.name", "rmsprop", "['adam', 'adamw', 'sgd']"),
        ("augment.flip", 1.5, ">= 0 and <= 1"),
        ("augment.noise", -0.1, ">= 0 and <= 1"),
        ("augment.max_rotation_deg", 400, "<= 180"),
        ("augment.scale_range", [0.9], "2 numbers"),
        ("augment.scale_range", [0, 1.1], "> 0"),
    ],
)
def test_out_of_range_values_name_key_value_and_allowed(dotted: str, value: Any,
                                                        allowed: str) -> None:
    message = _refused(dotted, value)
    assert allowed in message
    assert message.startswith("bad.yaml: ")


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("augment.scale_range", [1.2, 0.8], "min <= max"),
        ("model.features", [8, 0], "model.features must be positive integers, got 0"),
        ("model.features", [8], "model.features must name at least 2 levels"),
        ("model.norm", "layer", "model.norm must be one of"),
        ("model.dropout", math.nan, "model.dropout must be in [0, 1)"),
        ("model.residual", 1, "model.residual must be true or false, got 1"),
        ("model.depht", 3, "unknown key(s) ['model.depht']"),
        ("model", [8, 16], "section 'model' must be a mapping"),
        ("loss.name", "tversky", "loss.name must be one of"),
        ("loss.options", {"gama": 2}, "unknown key(s) ['loss.options.gama']"),
        ("loss.options", {"smooth_nr": -1}, "loss.options.smooth_nr must be >= 0, got -1.0"),
        ("loss.options", {"smooth_nr": "abc"}, "loss.options.smooth_nr must be a finite"),
        ("loss.options", {"batch_dice": 2}, "loss.options.batch_dice must be true or false"),
        ("loss.options", 5, "loss.options must be a mapping"),
        ("data.patch_size_vox", [20, 20, 20], "must be multiples of 8"),
        ("data.patch_size_vox", [8, 8, 8], "single bottleneck voxel"),
    ],
)
def test_cross_field_model_and_loss_faults_name_the_key(dotted: str, value: Any,
                                                        expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_model_and_loss(config_from_dict(_raw(dotted, value), source="bad.yaml"))
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


def test_numbers_written_as_text_and_off_are_understood() -> None:
    cfg = check_model_and_loss(load_config(
        "tiny-cpu", overrides=["optim.lr=1e-3", "train.amp=off", "model.dropout=1e-1",
                               "data.patch_size_vox=16", "loss.options={smooth_nr: 1e-4}"]))
    assert cfg.optim.lr == 0.001 and cfg.train.amp == "off"
    assert cfg.model["dropout"] == 0.1 and cfg.data.patch_size_vox == (16, 16, 16)
    assert cfg.loss.options == {"smooth_nr": 1e-4}


def test_override_errors_name_the_key_not_the_preset() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tiny-cpu", overrides=["train.epochs=0"])
    assert str(info.value) == "train.epochs must be an integer >= 1, got 0"


@pytest.mark.parametrize("item", ["data.patch_size_vox=[1, 2", "data.root={a: [}",
                                  "optim.lr=@x", "data.root=!!python/name:os.system"])
def test_override_value_that_is_not_yaml_is_refused_by_name(item: str) -> None:
    with pytest.raises(ConfigError, match="is not valid YAML") as info:
        load_config("tiny-cpu", overrides=[item])
    assert item.split("=")[0] in str(info.value)


def test_training_checks_channels_and_device_before_any_case(tmp_path: Path) -> None:
    from tumorscope.core.training.train import train

    cfg = load_config("tiny-cpu", overrides=["model.in_channels=3",
                                             f"data.root={tmp_path / 'nowhere'}",
                                             f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises(ConfigError, match=r"model.in_channels must be 4 .*got 3"):
        train(cfg, tmp_path / "run", progress=False)
    cfg = load_config("tiny-cpu", overrides=["model.out_channels=2"])
    with pytest.raises(ConfigError, match=r"model.out_channels must be 3 .*got 2"):
        check_before_training(cfg)
    cfg = load_config("tiny-cpu")
    cfg.train.epochs = 0  # a config changed in code is checked again
    with pytest.raises(ConfigError, match="train.epochs must be an integer >= 1, got 0"):
        train(cfg, tmp_path / "run", progress=False)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["preprocess", "F", "--spacing-mm", "0"], "argument --spacing-mm: must be a number"),
        (["preprocess", "F", "--spacing-mm", "inf"], "got 'inf'"),
        (["predict", "--checkpoint", "c.pt", "--input", "F", "--out", "O", "--overlap", "1.0"],
         "argument --overlap: must be a number >= 0 and < 1, got '1.0'"),
        (["predict", "--checkpoint", "c.pt", "--input", "F", "--out", "O", "--device", "gpu"],
         "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'gpu'"),
        (["demo-data", "--out", "D", "--cases", "0"], "argument --cases: must be an integer"),
        (["demo-data", "--out", "D", "--cases", "2.5"], "got '2.5'"),
        (["demo-data", "--out", "D", "--seed", "-1"], "argument --seed: must be an integer >= 0"),
        (["demo", "--cases", "1"], "argument --cases: must be an integer >= 2"),
    ],
)
def test_flags_are_checked_by_argparse_in_process(argv: list[str], expected: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert expected in capsys.readouterr().err


# ---------------------------------------------------------------- the real CLI, as a subprocess


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    for i in range(2):
        write_case(root, f"BraTS2021_{i:05d}", seed=i)
    return root


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns
            for p in folder.rglob("*") if p.is_file()}


def _run_cli(tmp_path: Path, *argv: str) -> tuple[int, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "TUMORSCOPE_CACHE": str(tmp_path / "envcache"),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "tumorscope.app.cli", *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stderr


def _error_line(stderr: str, command: str) -> str:
    """The one error line; argparse may print its usage block before it, nothing else."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"tumorscope {command}: error: ")]
    assert len(errors) == 1, stderr
    if len(lines) > 1:  # argparse: "usage: ..." and its continuation lines
        assert lines[0].startswith("usage: ") and lines[-1] == errors[0], stderr
        assert all(line.startswith(" ") for line in lines[1:-1]), stderr
    return errors[0]


def _nothing_written(tmp_path: Path, cohort: Path, before: dict[str, int]) -> None:
    assert _files(cohort) == before, "the cohort changed"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "home")
    assert leftovers == [], leftovers  # no run folder, runs/, cache or env cache
    assert not any((tmp_path / "home").iterdir()), "something was written under $HOME"


TRAIN_FAULTS = [
    ("train.epochs=0", "train.epochs must be an integer >= 1, got 0"),
    ("train.epochs=true", "train.epochs must be an integer >= 1, got true"),
    ("model.norm=layer", "model.norm must be one of ['instance', 'group', 'batch'], "
                         "got 'layer'"),
    ("data.root=[unclosed", "override 'data.root=[unclosed': the value '[unclosed' is not "
                            "valid YAML"),
]
"""Run as real subprocesses (each pays the torch import, ~2 s)."""

MORE_TRAIN_FAULTS = [
    ("data.skip_empty=2", "data.skip_empty must be true or false, got 2"),
    ("optim.lr=nan", "optim.lr must be a number > 0, got 'nan'"),
    ("optim.lr=-0.1", "optim.lr must be a number > 0, got -0.1"),
    ("data.patch_size_vox=[16, 16]", "data.patch_size_vox must be a list of 3 integers, "
                                     "each >= 1 and <= 1024, got [16, 16]"),
    ("loss.name=tversky", "loss.name must be one of ['dice', 'bce', 'weighted_bce', "
                          "'jaccard', 'focal', 'dice_bce', 'focal_dice'], got 'tversky'"),
    ("loss.options={smooth_nr: .nan}", "loss.options.smooth_nr must be a finite number"),
    ("train.steps_per_epoch=0", "train.steps_per_epoch must be an integer >= 1, got 0"),
    ("train.val_every_epochs=0", "train.val_every_epochs must be an integer >= 1, got 0"),
    ("train.sw_batch_size=0", "train.sw_batch_size must be an integer >= 1, got 0"),
    ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
    ("data.num_workers=-1", "data.num_workers must be an integer >= 0, got -1"),
    ("augment.scale_range=[1.2, 0.8]", "augment.scale_range must be [min, max] with "
                                       "min <= max, got [1.2, 0.8]"),
    ("augment.flip=2", "augment.flip must be a number >= 0 and <= 1, got 2"),
    ("train.ema=1.5", "train.ema must be a number > 0 and < 1, or null, got 1.5"),
    ("train.threads=0", "train.threads must be an integer >= 1, or null, got 0"),
    ("train.val_cases=0", "train.val_cases must be an integer >= 1, or null, got 0"),
    ("train.device=foo", "train.device must be auto, cpu, cuda, cuda:N or mps, got 'foo'"),
    ("data.spacing_mm=0", "data.spacing_mm must be a number >= 0.25 and <= 10 mm, or null"),
    ("model.features=[8, 16, 32, 0]", "model.features must be positive integers, got 0"),
    ("model.in_channels=3", "model.in_channels must be 4"),
    ("data.patch_size_vox=20", "data.patch_size_vox must be multiples of 8"),
]
"""Run through the same ``main()`` in this process (the subprocess layer is covered above)."""


def _train_argv(tmp_path: Path, cohort: Path, setting: str) -> list[str]:
    return ["train", "--data", str(cohort), "--out", str(tmp_path / "run"),
            "--set", setting, "--set", f"data.cache_dir={tmp_path / 'cache'}", "-q"]


@pytest.mark.parametrize(("setting", "shown"), TRAIN_FAULTS)
def test_train_with_a_bad_setting_exits_2_before_any_work(tmp_path: Path, cohort: Path,
                                                          setting: str, shown: str) -> None:
    before = _files(cohort)
    code, stderr = _run_cli(tmp_path, *_train_argv(tmp_path, cohort, setting))
    line = _error_line(stderr, "train")
    assert code == 2, stderr
    assert line == f"tumorscope train: error: {shown}" or shown in line, line
    _nothing_written(tmp_path, cohort, before)


@pytest.mark.parametrize(("setting", "shown"), MORE_TRAIN_FAULTS)
def test_train_main_refuses_bad_setting_in_one_line(
        tmp_path: Path, cohort: Path, setting: str, shown: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUMORSCOPE_CACHE", str(tmp_path / "envcache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    before = _files(cohort)
    assert main(_train_argv(tmp_path, cohort, setting)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("tumorscope train: error: ") and shown in err, err
    _nothing_written(tmp_path, cohort, before)


@pytest.mark.parametrize(
    ("argv", "command", "shown"),
    [
        (["preprocess", "{cohort}", "--spacing-mm", "0"], "preprocess",
         "argument --spacing-mm: must be a number >= 0.25 and <= 10 mm, got '0'"),
        (["preprocess", "{cohort}", "--spacing-mm", "nan"], "preprocess",
         "argument --spacing-mm: must be a number >= 0.25 and <= 10 mm, got 'nan'"),
        (["preprocess", "{cohort}", "--spacing-mm", "-1"], "preprocess",
         "argument --spacing-mm: must be a number >= 0.25 and <= 10 mm, got '-1'"),
        (["preprocess", "{cohort}", "--spacing-mm", "50"], "preprocess", "got '50'"),
        (["predict", "--checkpoint", "{tmp}/best.pt", "--input", "{cohort}", "--out",
          "{tmp}/run", "--overlap", "1"], "predict",
         "argument --overlap: must be a number >= 0 and < 1, got '1'"),
        (["predict", "--checkpoint", "{tmp}/best.pt", "--input", "{cohort}", "--out",
          "{tmp}/run", "--device", "foo"], "predict",
         "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'foo'"),
        (["train", "--data", "{cohort}", "--out", "{tmp}/run", "--device", "foo"], "train",
         "argument --device: must be auto, cpu, cuda, cuda:N or mps, got 'foo'"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path: Path, cohort: Path, argv: list[str],
                                          command: str, shown: str) -> None:
    before = _files(cohort)
    argv = [a.format(cohort=cohort, tmp=tmp_path) for a in argv]
    code, stderr = _run_cli(tmp_path, *argv)
    assert code == 2, stderr
    assert shown in _error_line(stderr, command)
    _nothing_written(tmp_path, cohort, before)


# ---------------------------------------------------------------- the config file's own shape

CONFIG_FILE_FAULTS = [
    ("list.yaml", "- a\n- b\n",
     "list.yaml: a config must be a mapping of sections (data, model, ...), got a list"),
    ("number.yaml", "42\n",
     "number.yaml: a config must be a mapping of sections (data, model, ...), got 42"),
    ("scalar_section.yaml", "data: 5\n",
     "scalar_section.yaml: section 'data' must be a mapping, got 5"),
    ("duplicate.yaml", "data:\n  batch_size: 2\n  batch_size: 3\n",
     "duplicate.yaml: key 'data.batch_size' is given twice, at lines 2 and 3: keep one"),
    ("empty.yaml", "",
     "empty.yaml: the config file is empty (start from a preset: tiny-cpu, default, "
     "tiny-2d, figshare-2d, lgg-2d)"),
]
"""A config file that is no config: before, a traceback (a list, a number), a fault blamed on
the ``--data`` flag (``data: 5``), or silently accepted (a key given twice: the last won; an
empty file: the full default model trained)."""


@pytest.mark.parametrize(("name", "text", "shown"), CONFIG_FILE_FAULTS)
def test_train_refuses_a_config_file_that_is_no_config(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, cohort: Path,
        name: str, text: str, shown: str) -> None:
    config = tmp_path_factory.mktemp("config") / name
    config.write_text(text)
    before = _files(cohort)
    code, stderr = _run_cli(tmp_path, "train", "--config", str(config), "--data", str(cohort),
                            "--out", str(tmp_path / "run"), "-q")
    line = _error_line(stderr, "train")
    assert code == 2, stderr
    assert line == f"tumorscope train: error: {config.parent}/{shown}", line
    _nothing_written(tmp_path, cohort, before)


@pytest.mark.parametrize(("text", "shown"), [
    ("# nothing but a comment\n\n", "the config file is empty (start from a preset"),
    ("---\n", "the config file is empty"),
    ("null\n", "a config must be a mapping of sections (data, model, ...), got null"),
    ("'text'\n", "got 'text'"),
    ("model: [8, 16]\n", "section 'model' must be a mapping, got a list"),
    ("train: 3\n", "section 'train' must be a mapping, got 3"),
    ("optim:\n  lr: 0.1\nmodel:\n  features: [8]\noptim:\n  lr: 0.2\n",
     "key 'optim' is given twice, at lines 1 and 5"),
    ("model:\n  blocks:\n    - {a: 1, a: 2}\n",
     "key 'model.blocks[0].a' is given twice, on line 3: keep one"),
])
def test_load_config_names_the_file_and_its_fault(tmp_path: Path, text: str,
                                                  shown: str) -> None:
    path = tmp_path / "my.yaml"
    path.write_text(text)
    for overrides in ([], [f"data.root={tmp_path}"]):  # --data never takes the blame
        with pytest.raises(ConfigError) as info:
            load_config(path, overrides=overrides)
        assert info.value.path == path and shown in info.value.fault, str(info.value)
        assert "override" not in str(info.value)


def test_a_config_without_duplicates_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    # The same key in two sections, and YAML merge keys that a mapping then overrides, are
    # not duplicates; an explicit empty mapping is a config (of defaults).
    path.write_text("data:\n  batch_size: 3\n  root: x\ntrain:\n  seed: 1\noptim:\n"
                    "  name: sgd\n  momentum: 0.9\nloss:\n  name: dice\n  options: {}\n")
    cfg = load_config(path, overrides=["train.epochs=2"])
    assert cfg.data.batch_size == 3 and cfg.train.seed == 1 and cfg.train.epochs == 2
    merged = tmp_path / "merged.yaml"
    merged.write_text("augment:\n  <<: {flip: 0.2, noise: 0.1}\n  flip: 0.3\n")
    cfg = load_config(merged)
    assert cfg.augment.flip == 0.3 and cfg.augment.noise == 0.1
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("{}\n")
    assert load_config(explicit) == Config()


def test_a_duplicate_key_in_an_override_value_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("tiny-cpu", overrides=["loss.options={smooth_nr: 1, smooth_nr: 2}"])
    assert str(info.value) == ("override 'loss.options={smooth_nr: 1, smooth_nr: 2}': key "
                               "'smooth_nr' is given twice in the value: keep one")
