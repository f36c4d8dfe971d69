"""The figures of ``kmat table``: each is written with the elements a reader needs (inspected on the
matplotlib Figure before it is saved), from fake run folders; offline, CPU, a few seconds."""

import json
import re
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import torch

from kmat.report.results import collect
from kmat.utils.io import atomic_save_safetensors

pytest.importorskip("matplotlib")

CLASSES_8 = [
    "melanoma",
    "nevus",
    "basal_cell_carcinoma",
    "keratosis",
    "dermatofibroma",
    "vascular",
    "scc",
    "other",
]


def _fake_run(
    out: Path, task: str, label: str, seed: int, classes, high: np.ndarray, low: np.ndarray, history=()
):
    d = out / "runs" / task / label / "16shot" / f"seed{seed}"
    d.mkdir(parents=True)
    metrics = {"acc": 50.0, "macro_f1": 40.0}
    res = {
        "method": label,
        "task": task,
        "seed": seed,
        "shots": 16,
        "backbone": "x",
        "metrics": {"high": metrics, "low": metrics, "h": metrics},
        "per_class": {"low": {c: 50.0 for c in classes}},
        "history": list(history),
    }
    (d / "result.json").write_text(json.dumps(res))
    if high is not None:
        atomic_save_safetensors(
            d / "class_embeddings.safetensors",
            {"high": torch.from_numpy(high).float(), "low": torch.from_numpy(low).float()},
        )
    return d


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _near_coincident(out: Path, seeds=(1,), spread=1e-3):
    """8 classes, 7 of whose high- and low-end embeddings nearly coincide (a collapsed classifier)
    next to one far away, for K-MaT and the row-5 ablation: in the PCA the 7 fall on one spot."""
    rng = np.random.default_rng(0)
    base, far = rng.normal(size=16), rng.normal(size=16)
    for label in ("kmat", "kmat-r5"):
        for seed in seeds:
            high = base + spread * rng.normal(size=(8, 16))
            low = base + spread * rng.normal(size=(8, 16))
            high[-1], low[-1] = far, far + 0.3 * rng.normal(size=16)
            _fake_run(out, "skin1", label, seed, CLASSES_8, _unit(high), _unit(low))


@pytest.fixture
def shown(monkeypatch):
    """The figures plots.py closes (after saving them), to inspect."""
    import matplotlib.pyplot as plt

    figs = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: figs.append(fig))
    yield figs
    for fig in figs:
        close(fig)


def _label_boxes(fig):
    renderer = fig.canvas.get_renderer()
    return [[t.get_window_extent(renderer) for t in ax.texts] for ax in fig.axes]


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_embeddings_figure_has_labelled_axes_seed_and_one_label_per_class_that_overlap_nothing(
    tmp_path, shown
):
    from kmat.report.plots import embeddings_2d

    _near_coincident(tmp_path, seeds=(2, 3))
    path = embeddings_2d(collect(tmp_path), "skin1", tmp_path / "e.png")
    assert path is not None and path.stat().st_size > 10_000
    fig = shown[0]
    assert len(fig.axes) == 2
    title = fig._suptitle.get_text()
    assert "seed 2" in title and "Skin I" in title  # the lowest seed both variants have, the task
    assert [ax.get_title() for ax in fig.axes] == ["K-MaT", "K-MaT without L_FGW (ablation row 5)"]
    for ax in fig.axes:
        assert re.fullmatch(r"PC1 \(\d+\.\d% of variance\)", ax.get_xlabel())
        assert re.fullmatch(r"PC2 \(\d+\.\d% of variance\)", ax.get_ylabel())
        assert sorted(t.get_text() for t in ax.texts) == sorted(c.replace("_", " ") for c in CLASSES_8)
    assert fig.axes[0].get_xlim() == fig.axes[1].get_xlim()  # one PCA: the panels share their axes
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "basal cell carcinoma" in legend and "high-end (filled dot)" in legend
    assert "low-end (hollow square)" in legend
    boxes = _label_boxes(fig)
    for ax, panel in zip(fig.axes, boxes, strict=True):
        frame = ax.get_window_extent(fig.canvas.get_renderer())
        for a, b in combinations(panel, 2):
            assert not _overlaps(a, b), (a, b)
        for box in panel:  # inside the axes
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
        markers = np.concatenate([c.get_offsets() for c in ax.collections])
        px = ax.transData.transform(markers)
        for box in panel:  # no label on a marker's centre
            assert not any(box.x0 < x < box.x1 and box.y0 < y < box.y1 for x, y in px)


def test_label_overlap_check_fails_on_labels_left_at_their_points(tmp_path, shown, monkeypatch):
    """The overlap check above can fail: with the placement switched off (each label on its point),
    the labels of the nearly coinciding classes overlap."""
    import kmat.report.plots as plots

    _near_coincident(tmp_path)
    monkeypatch.setattr(plots, "place_labels", lambda ax, anchors, *a, **k: ax.transData.transform(anchors))
    plots.embeddings_2d(collect(tmp_path), "skin1", tmp_path / "e.png")
    panel = _label_boxes(shown[0])[0]
    assert any(_overlaps(a, b) for a, b in combinations(panel, 2))


def test_embeddings_figure_with_coinciding_modalities_and_one_variant(tmp_path, shown):
    """A class whose two embeddings coincide keeps both visible (a dot inside a hollow square); with
    only K-MaT run there is one panel; points that do not vary at all are said to coincide."""
    from kmat.report.plots import embeddings_2d

    e = _unit(np.eye(3, 8) + 0.1)
    _fake_run(tmp_path, "skin1", "kmat", 1, ["a", "b", "c"], e, e.copy())
    assert embeddings_2d(collect(tmp_path), "skin1", tmp_path / "e.png") is not None
    (ax,) = shown[0].axes
    high, low = ax.collections
    assert np.allclose(high.get_offsets(), low.get_offsets())
    assert (high.get_facecolors()[:, 3] > 0).all() and (low.get_facecolors()[:, 3] == 0).all()
    assert high.get_sizes()[0] < low.get_sizes()[0]  # the dot fits inside the square
    assert "seed 1" in shown[0]._suptitle.get_text()

    same = np.tile(_unit(np.ones((1, 8))), (3, 1))
    _fake_run(tmp_path, "skin2", "kmat", 1, ["a", "b", "c"], same, same.copy())
    assert embeddings_2d(collect(tmp_path), "skin2", tmp_path / "f.png") is not None
    assert "points coincide" in shown[1].axes[0].get_xlabel()


def test_pca_2d_explained_variance():
    from kmat.report.plots import pca_2d

    rng = np.random.default_rng(1)
    pts = rng.normal(size=(40, 5)) * np.array([5.0, 2.0, 0.1, 0.1, 0.1])
    xy, ratio = pca_2d(pts)
    var = np.var(pts - pts.mean(0), axis=0).sum()
    assert ratio[0] > 0.8 and ratio[0] + ratio[1] > 0.99
    assert np.isclose(np.var(xy[:, 0]) / var, ratio[0])
    assert xy.shape == (40, 2)


def test_fgw_figure_names_seeds_and_keeps_coinciding_curves_visible(tmp_path, shown):
    from kmat.report.plots import fgw_diagnostics

    hist = [{"epoch": e, "fgw_plan_diag": 1 / 3, "dist_hl": 1.0} for e in range(5)]
    for seed in (1, 2):  # identical curves
        _fake_run(tmp_path, "skin1", "kmat", seed, ["a", "b", "c"], None, None, history=hist)
    assert fgw_diagnostics(collect(tmp_path), "skin1", tmp_path / "f.png") is not None
    fig = shown[0]
    ax = fig.axes[0]
    seeds = [ln for ln in ax.get_lines() if ln.get_label().startswith("seed")]
    assert len(seeds) == 2
    assert seeds[0].get_linewidth() > seeds[1].get_linewidth()  # the first drawn is wider: both show
    assert seeds[0].get_marker() != seeds[1].get_marker()
    assert "seeds 1, 2" in fig._suptitle.get_text()


def test_fgw_figure_shows_the_anchor_cosine_when_runs_record_it(tmp_path, shown):
    """A third panel, the low-end prompts' mean cosine to their description prototypes, appears for
    runs trained with the anchor (history key ``cos_anchor_low``) and only for them."""
    from kmat.report.plots import fgw_diagnostics

    plain = [{"epoch": e, "fgw_plan_diag": 1 / 3, "dist_hl": 1.0} for e in range(4)]
    _fake_run(tmp_path / "a", "skin1", "kmat", 1, ["a", "b", "c"], None, None, history=plain)
    assert fgw_diagnostics(collect(tmp_path / "a"), "skin1", tmp_path / "a.png") is not None
    assert len(shown[-1].axes) == 2
    anchored = [{**h, "cos_anchor_low": 0.5 + 0.1 * h["epoch"]} for h in plain]
    _fake_run(tmp_path / "b", "skin1", "kmat", 1, ["a", "b", "c"], None, None, history=anchored)
    assert fgw_diagnostics(collect(tmp_path / "b"), "skin1", tmp_path / "b.png") is not None
    fig = shown[-1]
    assert len(fig.axes) == 3 and "prototype" in fig.axes[2].get_title()
    (line,) = [ln for ln in fig.axes[2].get_lines() if ln.get_label().startswith("seed")]
    assert list(line.get_ydata()) == pytest.approx([0.5, 0.6, 0.7, 0.8])
