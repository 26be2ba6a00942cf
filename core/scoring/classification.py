"""Tumour-type classification scores: accuracy, per-class precision/recall/F1, macro F1,
confusion matrix and one-vs-rest ROC-AUC (scikit-learn's definitions, which nilearn brings)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationScores:
    """Scores of predicted against true class indices (0 .. len(class_names) - 1).

    ``per_class[name]`` holds ``precision``, ``recall``, ``f1`` and ``roc_auc`` (NaN where a
    class is absent from the truth or everywhere: undefined, not 0) and ``support``;
    ``confusion[i][j]`` counts true class ``i`` predicted as ``j``."""

    n: int
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: tuple[tuple[int, ...], ...]
    class_names: tuple[str, ...]

    def flat(self) -> dict[str, float]:
        """``accuracy``, ``macro_f1`` and ``f1_<name>`` per class: what log.csv records."""
        out = {"accuracy": self.accuracy, "macro_f1": self.macro_f1}
        out.update({f"f1_{k}": v["f1"] for k, v in self.per_class.items()})
        return out


def classification_scores(true: Sequence[int], pred: Sequence[int],
                          probabilities: np.ndarray | None = None, *,
                          class_names: Sequence[str]) -> ClassificationScores:
    """Score ``pred`` against ``true`` (class indices); ``probabilities`` (N, K) give the
    ROC-AUC. Samples whose true class is unknown (-1) are left out. With no sample left
    every score is NaN (a defined case).

    >>> s = classification_scores([0, 1, 2, 2], [0, 1, 2, 1], class_names=("m", "g", "p"))
    >>> s.accuracy, round(s.macro_f1, 4), s.confusion[2]
    (0.75, 0.7778, (0, 1, 1))
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

    names = tuple(class_names)
    k = len(names)
    t = np.asarray(true, dtype=int)
    p = np.asarray(pred, dtype=int)
    if t.shape != p.shape:
        raise ValueError(f"true and pred differ in length: {t.shape} vs {p.shape}")
    known = t >= 0
    t, p = t[known], p[known]
    prob = None if probabilities is None else np.asarray(probabilities, float)[known]
    labels = list(range(k))
    nan = math.nan
    if t.size == 0:
        empty = {n: {"precision": nan, "recall": nan, "f1": nan, "roc_auc": nan, "support": 0}
                 for n in names}
        return ClassificationScores(0, nan, nan, empty, tuple((0,) * k for _ in names), names)
    precision, recall, f1, support = precision_recall_fscore_support(
        t, p, labels=labels, zero_division=np.nan)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        auc = nan
        positives = t == i
        if prob is not None and positives.any() and not positives.all():
            auc = float(roc_auc_score(positives, prob[:, i]))
        # A class in the truth that is never predicted has F1 0 (recall 0), not NaN.
        score = (0.0 if math.isnan(f1[i]) else float(f1[i])) if support[i] else nan
        per_class[name] = {"precision": float(precision[i]), "recall": float(recall[i]),
                           "f1": score, "roc_auc": auc, "support": int(support[i])}
    present = [v["f1"] for v in per_class.values() if v["support"]]
    matrix = confusion_matrix(t, p, labels=labels)
    return ClassificationScores(
        n=int(t.size), accuracy=float((t == p).mean()),
        macro_f1=float(np.mean(present)) if present else nan,
        per_class=per_class, confusion=tuple(tuple(int(x) for x in row) for row in matrix),
        class_names=names)
