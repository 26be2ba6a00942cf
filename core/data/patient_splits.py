"""Patient-wise splits of slice datasets: seeded, from a dataset's folds, or from a user's CSV.

Every split here keeps all slices of a patient on one side: slice-wise splits put
neighbouring slices of one tumour on both sides, the leak that inflates published figshare
accuracies to 98-99 %. All functions are pure (a mapping of slice id to patient id in, a
:class:`PatientSplit` out) and deterministic.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumorscope.core.errors import ConfigError, LayoutError
from tumorscope.core.oserrors import os_error_words

DEFAULT_FRACTIONS: dict[str, float] = {"train": 0.7, "val": 0.15, "test": 0.15}
_PART_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class PatientSplit:
    """Patients and slices per part (``train``, ``val``, ``test``, or a user's names).

    ``patients`` lists each part's patient ids sorted, ``slices`` its slice ids in the order
    given; ``source`` says where the split came from (``seed 0``, ``cvind.mat: test fold 1``,
    a CSV file)."""

    patients: dict[str, tuple[str, ...]]
    slices: dict[str, tuple[str, ...]]
    source: str

    def part_of(self, slice_id: str) -> str:
        """The part holding ``slice_id`` (``KeyError`` for an id not in the split)."""
        for part, ids in self.slices.items():
            if slice_id in ids:
                return part
        raise KeyError(slice_id)


def _by_patient(patient_of: Mapping[str, str]) -> dict[str, list[str]]:
    if not patient_of:
        raise ConfigError("no slices to split")
    out: dict[str, list[str]] = {}
    for slice_id, patient in patient_of.items():
        if not isinstance(patient, str) or not patient or patient == "?":
            raise ConfigError(f"slice {slice_id!r} has no patient id ({patient!r}): a "
                              "patient-wise split needs one for every slice")
        out.setdefault(patient, []).append(slice_id)
    return out


def _build(patient_of: Mapping[str, str], part_of_patient: Mapping[str, str], parts: list[str],
           source: str) -> PatientSplit:
    patients = {p: tuple(sorted(q for q, part in part_of_patient.items() if part == p))
                for p in parts}
    slices = {p: tuple(s for s, q in patient_of.items() if part_of_patient[q] == p)
              for p in parts}
    return PatientSplit(patients, slices, source)


def _counts(n: int, fractions: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every part with a positive fraction gets one patient when
    there are enough."""
    raw = {p: f * n for p, f in fractions.items()}
    counts = {p: int(np.floor(v)) for p, v in raw.items()}
    order = sorted(raw, key=lambda p: (-(raw[p] - counts[p]), list(raw).index(p)))
    for p in order[: n - sum(counts.values())]:
        counts[p] += 1
    for p in fractions:
        if fractions[p] > 0 and counts[p] == 0:
            donor = max(counts, key=lambda q: counts[q])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[p] += 1
    return counts


def split_patients(patient_of: Mapping[str, str], *,
                   fractions: Mapping[str, float] | None = None, seed: int = 0,
                   strata: Mapping[str, object] | None = None) -> PatientSplit:
    """Split patients at random (fixed by ``seed``) into parts of ``fractions`` of them.

    patient_of : slice id -> patient id, for every slice
    fractions : part -> share of the patients (default 0.7 / 0.15 / 0.15 train, val, test);
        shares >= 0 summing to 1
    strata : patient id -> a value to balance (the tumour type): each part gets its share
        of every stratum, to within one patient

    Which patient goes where depends only on the arguments, not on their order: the same
    seed gives the same split. Each part's slices keep the order they were given in.
    Raises :class:`ConfigError` for bad fractions or a slice without a patient id.

    >>> s = split_patients({"1": "a", "2": "a", "3": "b", "4": "c"}, seed=0,
    ...                    fractions={"train": 0.5, "test": 0.5})
    >>> sorted(len(v) for v in s.patients.values()), s.part_of("1") == s.part_of("2")
    ([1, 2], True)
    """
    fractions = dict(DEFAULT_FRACTIONS if fractions is None else fractions)
    bad = [p for p in fractions if not isinstance(p, str) or not _PART_RE.match(p)]
    values = list(fractions.values())
    if not fractions or bad or any(not isinstance(v, int | float) or v < 0 for v in values) \
            or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(f"fractions must name parts (letters, digits, _ or -) with shares "
                          f">= 0 summing to 1, got {fractions!r}")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    patients = sorted(_by_patient(patient_of))
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    keys: dict[str, float] = {}
    groups: dict[str, list[str]] = {}
    for p in patients:
        groups.setdefault(str(strata.get(p)) if strata is not None else "", []).append(p)
    # Each stratum shuffled, then spread evenly over one ordering of all patients: cutting
    # that ordering into consecutive parts gives each part its share of every stratum.
    for name in sorted(groups):
        members = groups[name]
        order = rng.permutation(len(members))
        offset = rng.random()
        for rank, i in enumerate(order):
            keys[members[i]] = (rank + offset) / len(members)
    ordered = sorted(patients, key=lambda p: (keys[p], p))
    counts = _counts(len(ordered), fractions)
    part_of_patient: dict[str, str] = {}
    start = 0
    for part in fractions:
        for p in ordered[start:start + counts[part]]:
            part_of_patient[p] = part
        start += counts[part]
    return _build(patient_of, part_of_patient, list(fractions), f"seed {int(seed)}")


def split_by_folds(patient_of: Mapping[str, str], folds: Mapping[str, int], *, test_fold: int,
                   val_fold: int | None = None, source: str | Path = "folds") -> PatientSplit:
    """A split that honours given folds (figshare's ``cvind.mat``): fold ``test_fold`` tests,
    ``val_fold`` (if given) validates, the others train.

    folds : slice id -> fold number, for every slice of ``patient_of``

    Raises :class:`LayoutError` naming ``source`` when the folds put one patient in two folds
    (the split would leak) or miss a slice, :class:`ConfigError` for a fold that is not there.

    >>> s = split_by_folds({"1": "a", "2": "a", "3": "b"}, {"1": 1, "2": 1, "3": 2}, test_fold=1)
    >>> s.patients
    {'train': ('b',), 'test': ('a',)}
    """
    groups = _by_patient(patient_of)
    missing = [s for s in patient_of if s not in folds]
    if missing:
        raise LayoutError(f"no fold for {len(missing)} slice(s) ({', '.join(missing[:3])}"
                          f"{', ...' if len(missing) > 3 else ''})", path=source)
    fold_of: dict[str, int] = {}
    for patient, slices in sorted(groups.items()):
        found = sorted({int(folds[s]) for s in slices})
        if len(found) > 1:
            raise LayoutError(f"patient {patient} is in folds {', '.join(map(str, found))}: a "
                              "split on these folds would put the patient on both sides",
                              path=source)
        fold_of[patient] = found[0]
    present = sorted(set(fold_of.values()))
    for name, fold in (("test_fold", test_fold), ("val_fold", val_fold)):
        if fold is not None and fold not in present:
            raise ConfigError(f"{name} must be one of the folds {present}, got {fold!r}")
    if val_fold is not None and val_fold == test_fold:
        raise ConfigError(f"val_fold and test_fold must differ, got {val_fold} for both")
    parts = ["train"] + (["val"] if val_fold is not None else []) + ["test"]
    part_of_patient = {p: "test" if f == test_fold else "val" if f == val_fold else "train"
                       for p, f in fold_of.items()}
    where = Path(source).name if isinstance(source, Path) else source
    return _build(patient_of, part_of_patient, parts, f"{where}: test fold {test_fold}"
                  + (f", validation fold {val_fold}" if val_fold is not None else ""))


def read_split_csv(path: str | Path, patient_of: Mapping[str, str]) -> PatientSplit:
    """A user's split file: a CSV with a ``split`` column and a ``patient`` (or
    ``patient_id``) column, or a ``slice`` (``slice_id``) column; every patient (or slice)
    of ``patient_of`` on one row.

    Raises :class:`ConfigError` naming the file (and the row) for a missing column, an id
    that is not in the dataset, a patient on two sides, or patients the file leaves out.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip().lower() for c in reader.fieldnames or []]
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()}
                    for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        words = os_error_words(exc) if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"split file cannot be read: {words}", path=path) from exc
    key = next((c for c in ("patient", "patient_id", "case", "case_id", "slice", "slice_id")
                if c in columns), None)
    if "split" not in columns or key is None:
        raise ConfigError(f"columns {columns}: expected 'split' and 'patient' (or 'case', "
                          "'slice')", path=path)
    if key.startswith("case"):  # a 3-D case is its own patient
        key = "patient"
        rows = [{**r, "patient": r.get("case") or r.get("case_id", "")} for r in rows]
    groups = _by_patient(patient_of)
    part_of_patient: dict[str, str] = {}
    parts: list[str] = []
    for line, row in enumerate(rows, start=2):
        ident, part = row.get(key, ""), row.get("split", "")
        if not _PART_RE.match(part):
            raise ConfigError(f"row {line}: split {part!r}: expected a name of letters, "
                              "digits, _ or -", path=path)
        if key.startswith("patient"):
            if ident not in groups:
                raise ConfigError(f"row {line}: patient {ident!r} is not in the dataset",
                                  path=path)
            patient = ident
        else:
            if ident not in patient_of:
                raise ConfigError(f"row {line}: slice {ident!r} is not in the dataset",
                                  path=path)
            patient = patient_of[ident]
        if part_of_patient.get(patient, part) != part:
            raise ConfigError(f"row {line}: patient {patient} is in {part_of_patient[patient]!r} "
                              f"and {part!r}: a patient must be on one side only", path=path)
        part_of_patient[patient] = part
        if part not in parts:
            parts.append(part)
    left = sorted(set(groups) - set(part_of_patient))
    if left:
        raise ConfigError(f"{len(left)} patient(s) not in the split file ({', '.join(left[:3])}"
                          f"{', ...' if len(left) > 3 else ''}): expected every patient on a row",
                          path=path)
    return _build(patient_of, part_of_patient, parts, str(path))


def fold_parts(ids: list[str], *, folds: int, fold: int, seed: int
               ) -> tuple[list[str], list[str]]:
    """``(train, val)`` of fold ``fold`` (1-based) of ``folds``: ``ids`` shuffled by ``seed``
    and dealt into ``folds`` parts of near-equal size; the same ``ids`` and seed give the
    same parts for every fold, so the folds' validation sets are disjoint and cover all.

    >>> [fold_parts(list("abcde"), folds=2, fold=k, seed=0)[1] for k in (1, 2)]
    [['b', 'c', 'd'], ['a', 'e']]
    """
    if not 1 <= fold <= folds or folds > len(ids):
        raise ConfigError(f"data.fold must be in 1..data.folds ({folds}) and data.folds at "
                          f"most the {len(ids)} case(s) to split, got fold {fold}")
    order = np.random.default_rng([seed, 1]).permutation(len(ids))
    val = sorted(ids[i] for r, i in enumerate(order) if r % folds == fold - 1)
    return sorted(set(ids) - set(val)), val


def read_split_file(path: str | Path, patient_of: Mapping[str, str]) -> PatientSplit:
    """A user's split: a CSV (:func:`read_split_csv`) or a JSON object of part -> ids (a
    run's ``split.json``: case or slice ids), which must name ``train`` and ``val`` and
    keep every patient on one side. Raises :class:`ConfigError` naming the file."""
    import json

    path = Path(path)
    if path.suffix.lower() != ".json":
        split = read_split_csv(path, patient_of)
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            words = os_error_words(exc) if isinstance(exc, OSError) else str(exc)
            raise ConfigError(f"split file cannot be read: {words}", path=path) from exc
        if not isinstance(data, dict) or not all(
                isinstance(v, list) and all(isinstance(i, str) for i in v)
                for v in data.values()):
            raise ConfigError("expected a JSON object of part -> list of ids", path=path)
        unknown = sorted({i for v in data.values() for i in v} - set(patient_of))
        if unknown:
            raise ConfigError(f"id(s) not in the dataset: {', '.join(unknown[:5])}", path=path)
        part_of_patient: dict[str, str] = {}
        for part, ids in data.items():
            for i in ids:
                patient = patient_of[i]
                if part_of_patient.setdefault(patient, part) != part:
                    raise ConfigError(f"patient {patient!r} is on two sides "
                                      f"({part_of_patient[patient]} and {part})", path=path)
        listed = {i for v in data.values() for i in v}
        for i, patient in patient_of.items():
            if i not in listed and patient not in part_of_patient:
                raise ConfigError(f"leaves out {i!r}: every case must be in one part",
                                  path=path)
        split = _build(patient_of, part_of_patient, list(data), str(path))
    if not split.slices.get("train") or not split.slices.get("val"):
        raise ConfigError(f"parts {sorted(split.slices)}: a split file needs non-empty "
                          "'train' and 'val'", path=path)
    return split
