"""Figures (matplotlib, imported lazily; install the ``plots`` extra).

- ``per_class_low_<task>.png``: per-class accuracy on the low-end modality per method (paper Fig. 2b);
- ``embeddings_<task>.png``: a 2-D PCA of the high- and low-end class text embeddings of K-MaT
  with and without L_FGW (paper Fig. 2a; "without" is ablation row 5, CSC+MSC+anchor);
- ``fgw_<task>.png``: K-MaT's FGW diagnostics per epoch and seed (the plan's mass on matching
  classes, and the mean distance ``||t_i^H - t_i^L||`` between a class's two prompts), with each
  seed's low-end accuracy: a low-end classifier collapsing onto the high-end one shows here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kmat.errors import KmatError
from kmat.run.experiments import TABLE2_METHODS, TASK_DISPLAY
from kmat.run.layout import RunLayout


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:  # pragma: no cover - optional dependency
        raise KmatError("figures need matplotlib: pip install 'kmat[plots]'") from err
    return plt


def per_class_low(agg: dict, task: str, path: Path) -> Path | None:
    names = dict(TABLE2_METHODS)
    labels = [lab for lab, _ in TABLE2_METHODS if (task, lab) in agg]
    if not labels:
        return None
    classes = list(agg[(task, labels[0])]["per_class_low"])
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(classes)), 3.6))
    w = 0.8 / len(labels)
    x = np.arange(len(classes))
    for j, lab in enumerate(labels):
        vals = [agg[(task, lab)]["per_class_low"].get(c) or 0.0 for c in classes]
        ax.bar(x + (j - (len(labels) - 1) / 2) * w, vals, w, label=names.get(lab, lab))
    ax.set_xticks(x, [c.replace("_", " ") for c in classes], rotation=15)
    ax.set_ylabel("low-end accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{TASK_DISPLAY.get(task, task)}: per-class accuracy on the low-end modality")
    ax.legend(fontsize=7, ncol=min(3, len(labels)))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def embeddings_2d(rows: list[dict], task: str, path: Path, classes: list[str] | None = None) -> Path | None:
    """PCA of K-MaT's class embeddings (both modalities) with and without L_FGW: the first seed's run."""
    from safetensors.torch import load_file
    from sklearn.decomposition import PCA

    variants = [("kmat", "K-MaT"), ("kmat-r5", "K-MaT without L_FGW")]
    found = []
    for lab, title in variants:
        files = sorted(
            RunLayout.of(r["folder"]).embeddings
            for r in rows
            if r["task"] == task and r["label"] == lab and RunLayout.of(r["folder"]).embeddings.is_file()
        )
        if files:
            found.append((title, load_file(str(files[0]))))
    if not found:
        return None
    pts = np.concatenate([np.concatenate([e["high"].numpy(), e["low"].numpy()]) for _, e in found])
    xy = PCA(n_components=2).fit_transform(pts)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    c = found[0][1]["high"].shape[0]
    styles = [("o", "tab:blue", "^", "tab:orange"), ("o", "tab:green", "s", "tab:red")]
    for k, (title, _) in enumerate(found):
        seg = xy[k * 2 * c : (k + 1) * 2 * c]
        mh, ch, ml, cl = styles[k]
        ax.scatter(seg[:c, 0], seg[:c, 1], marker=mh, c=ch, label=f"{title}: high-end")
        ax.scatter(seg[c:, 0], seg[c:, 1], marker=ml, c=cl, label=f"{title}: low-end")
        for i in range(c):
            name = classes[i].replace("_", " ") if classes and i < len(classes) else str(i)
            ax.annotate(name, seg[i], fontsize=7)
            ax.annotate(name, seg[c + i], fontsize=7)
    ax.ticklabel_format(style="sci", scilimits=(-2, 2))
    ax.set_title(f"{TASK_DISPLAY.get(task, task)}: class text embeddings (PCA)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def fgw_diagnostics(rows: list[dict], task: str, path: Path, label: str = "kmat") -> Path | None:
    """K-MaT's FGW diagnostics over epochs, one line per seed (from the runs' histories)."""
    runs = sorted(
        (r for r in rows if r["task"] == task and r["label"] == label and r.get("history")),
        key=lambda r: r["seed"] or 0,
    )
    runs = [r for r in runs if any("fgw_plan_diag" in h for h in r["history"])]
    if not runs:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    panels = [
        ("fgw_plan_diag", "plan mass on matching classes\n(1/C: uniform; 1: each class to itself)"),
        ("dist_hl", "mean ||t_i^H - t_i^L||\n(0: low-end prompts = high-end prompts)"),
    ]
    n_classes = len(runs[0]["per_class_low"]) or None
    for ax, (key, title) in zip(axes, panels, strict=True):
        for r in runs:
            pts = [(h["epoch"], h[key]) for h in r["history"] if key in h]
            if pts:
                e, v = zip(*pts, strict=True)
                ax.plot(e, v, marker=".", label=f"seed {r['seed']}: Lo {r['low_acc']:.1f}%")
        if key == "fgw_plan_diag" and n_classes:
            ax.axhline(1 / n_classes, color="grey", ls=":", lw=1, label="uniform plan")
            ax.set_ylim(0, 1.05)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"{TASK_DISPLAY.get(task, task)}: K-MaT's FGW alignment during training", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_figures(out: str | Path, agg: dict, rows: list[dict]) -> list[Path]:
    """All figures for the tasks present in ``agg`` (``rows``: the runs behind it, from
    :func:`kmat.report.results.collect`); returns the written paths."""
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task in sorted({t for t, _ in agg}):
        classes = next((list(v["per_class_low"]) for (t, _), v in agg.items() if t == task), None)
        for p in (
            per_class_low(agg, task, fig_dir / f"per_class_low_{task}.png"),
            embeddings_2d(rows, task, fig_dir / f"embeddings_{task}.png", classes),
            fgw_diagnostics(rows, task, fig_dir / f"fgw_{task}.png"),
        ):
            if p is not None:
                written.append(p)
    return written
