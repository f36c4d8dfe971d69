"""Evaluation metrics (percentages, 0-100): accuracy, macro-F1, harmonic mean, per class, confusion."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def harmonic_mean(a: float, b: float) -> float:
    """``H = 2ab / (a + b)`` (0 when both are 0)."""
    return 0.0 if a + b == 0 else 2.0 * a * b / (a + b)


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    """Accuracy and macro-F1 (%), per-class accuracy (%, recall) and the confusion matrix."""
    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    labels = list(range(num_classes))
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    per_class = [float(100.0 * cm[i, i] / support[i]) if support[i] else None for i in labels]
    acc = float(100.0 * (y_true == y_pred).mean()) if len(y_true) else 0.0
    f1 = float(100.0 * f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0))
    return {
        "acc": acc,
        "macro_f1": f1,
        "per_class_acc": per_class,
        "confusion": cm.tolist(),
        "n": int(len(y_true)),
    }


def cross_modal_summary(high: dict, low: dict) -> dict:
    """``{"high": {acc, macro_f1}, "low": {...}, "h": {...}}`` with H per metric."""
    out = {r: {k: round(m[k], 4) for k in ("acc", "macro_f1")} for r, m in (("high", high), ("low", low))}
    out["h"] = {k: round(harmonic_mean(high[k], low[k]), 4) for k in ("acc", "macro_f1")}
    return out
