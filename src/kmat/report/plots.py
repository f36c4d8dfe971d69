"""Figures (matplotlib, imported lazily; install the ``plots`` extra).

- ``per_class_low_<task>.png``: per-class accuracy on the low-end modality per method (paper Fig. 2b);
- ``embeddings_<task>.png``: a 2-D PCA of the high- and low-end class text embeddings of K-MaT
  with and without L_FGW (paper Fig. 2a; "without" is ablation row 5, CSC+MSC+anchor);
- ``fgw_<task>.png``: K-MaT's FGW diagnostics per epoch and seed (the plan's mass on matching
  classes, and the mean distance ``||t_i^H - t_i^L||`` between a class's two prompts), with each
  seed's low-end accuracy: a low-end classifier collapsing onto the high-end one shows here.
- ``sensitivity_<task>.png`` (and ``sensitivity_avg.png`` over tasks): heat maps of K-MaT's mean Lo
  and H over lambda_fgw x lambda_anchor, one panel per alpha (:mod:`kmat.report.sensitivity`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kmat.errors import KmatError
from kmat.report.sensitivity import (
    AVG,
    SensitivityStudy,
    seeds_text,
    studies_file_suffix,
    task_title,
)
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
    """Per-class low-end accuracy per method (the paper's Fig. 2b): mean over seeds with the std as
    error bars, a chance line (100 / C), a ``0`` above a bar of zero height and ``n/a`` where a
    class has no result, so that neither looks like the other."""
    names = dict(TABLE2_METHODS)
    labels = [lab for lab, _ in TABLE2_METHODS if (task, lab) in agg]
    if not labels:
        return None
    classes = list(agg[(task, labels[0])]["per_class_low"])
    seeds = sorted({agg[(task, lab)]["low_acc"][2] for lab in labels})
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(classes)), 3.8))
    w = 0.8 / len(labels)
    x = np.arange(len(classes))
    for j, lab in enumerate(labels):
        means = agg[(task, lab)]["per_class_low"]
        stds = agg[(task, lab)].get("per_class_low_std", {})
        vals = [means.get(c) for c in classes]
        err = [stds.get(c) or 0.0 for c in classes]
        xs = x + (j - (len(labels) - 1) / 2) * w
        bars = ax.bar(
            xs,
            [v or 0.0 for v in vals],
            w,
            yerr=err,
            capsize=2,
            error_kw={"elinewidth": 0.8, "alpha": 0.7},
            label=names.get(lab, lab),
        )
        colour = bars.patches[0].get_facecolor()
        for xi, v in zip(xs, vals, strict=True):
            if v is None or v < 0.5:
                ax.text(
                    xi, 1.5, "n/a" if v is None else "0", ha="center", va="bottom", fontsize=6, color=colour
                )
    chance = 100.0 / len(classes)
    ax.axhline(chance, ls=":", lw=1, color="0.4", label=f"chance ({chance:.1f} %)")
    ax.set_xticks(x, [c.replace("_", " ") for c in classes], rotation=15)
    ax.set_ylabel("low-end accuracy (%)")
    ax.set_ylim(0, 105)
    n = "/".join(str(k) for k in seeds)
    ax.set_title(
        f"{TASK_DISPLAY.get(task, task)}: per-class accuracy on the low-end modality\n"
        f"mean over {n} seed(s); error bars: std over seeds"
    )
    ax.legend(fontsize=7, ncol=min(4, len(labels) + 1), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def embeddings_2d(rows: list[dict], task: str, path: Path, classes: list[str] | None = None) -> Path | None:
    """PCA of K-MaT's class embeddings (both modalities) with and without L_FGW: the first seed's run."""
    from sklearn.decomposition import PCA

    from kmat.run.predict import load_embeddings  # verified: a damaged file is refused by name

    variants = [("kmat", "K-MaT"), ("kmat-r5", "K-MaT without L_FGW")]
    found = []
    for lab, title in variants:
        files = sorted(
            RunLayout.of(r["folder"]).embeddings
            for r in rows
            if r["task"] == task and r["label"] == lab and RunLayout.of(r["folder"]).embeddings.is_file()
        )
        if files:
            found.append((title, load_embeddings(files[0])))
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


SENS_METRICS = [("low", "Lo: low-end test accuracy (%)"), ("h", "H: harmonic mean of Hi and Lo (%)")]


def _fmt_value(v: float) -> str:
    return f"{v:g}"


def sensitivity_heatmaps(study: SensitivityStudy, task: str, path: Path) -> Path | None:
    """Mean Lo (top row) and mean H (bottom row) of one task (or ``"avg"``): rows lambda_fgw, columns
    lambda_anchor, one panel per alpha, one colour scale per metric, the value in each cell."""
    alphas, lfs, las = study.panel_alphas, study.lambda_fgws, study.lambda_anchors
    data = {m: np.full((len(alphas), len(lfs), len(las)), np.nan) for m, _ in SENS_METRICS}
    for j, alpha in enumerate(alphas):
        for i, lf in enumerate(lfs):
            for k, la in enumerate(las):
                c = study.cell(task, alpha, lf, la)
                if c is not None:
                    data["low"][j, i, k] = c.low[0]
                    data["h"][j, i, k] = c.h[0]
    if np.isnan(data["low"]).all():
        return None
    plt = _plt()
    n = len(alphas)
    fig, axes = plt.subplots(
        2,
        n,
        figsize=(1.6 + n * (0.75 * len(las) + 1.1), 1.5 + 2 * (0.5 * len(lfs) + 0.9)),
        squeeze=False,
        layout="constrained",
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="lightgrey")  # a cell not run: grey, "–"
    for row, (metric, label) in enumerate(SENS_METRICS):
        vals = data[metric]
        lo, hi = float(np.nanmin(vals)), float(np.nanmax(vals))
        if hi - lo < 1e-9:  # a flat grid still gets a scale
            lo, hi = lo - 0.5, hi + 0.5
        image = None
        for j, alpha in enumerate(alphas):
            ax = axes[row, j]
            image = ax.imshow(np.ma.masked_invalid(vals[j]), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
            for i in range(len(lfs)):
                for k in range(len(las)):
                    v = vals[j, i, k]
                    if np.isnan(v):
                        ax.text(k, i, "–", ha="center", va="center", fontsize=9, color="black")
                        continue
                    dark = (v - lo) / (hi - lo) < 0.6  # viridis is dark below ~0.6: white text
                    ax.text(
                        k,
                        i,
                        f"{v:.1f}",
                        ha="center",
                        va="center",
                        fontsize=9,
                        color="white" if dark else "black",
                    )
            ax.set_xticks(range(len(las)), [_fmt_value(v) for v in las])
            ax.set_yticks(range(len(lfs)), [_fmt_value(v) + (" (off)" if v == 0 else "") for v in lfs])
            ax.set_xlabel("lambda_anchor")
            if j == 0:
                ax.set_ylabel("lambda_fgw")
            name = "Lo" if metric == "low" else "H"
            ax.set_title(f"{name}, alpha = {_fmt_value(alpha)}" if alpha is not None else name, fontsize=10)
        fig.colorbar(image, ax=list(axes[row, :]), label=label, shrink=0.9)
    if task == AVG:
        who = "Mean over " + ", ".join(task_title(t) for t in study.tasks)
        title = f"{who}: K-MaT sensitivity ({study.setting}), {seeds_text(study, task)}"
    else:
        title = (
            f"{task_title(task)}: K-MaT sensitivity ({study.setting}), mean over {seeds_text(study, task)}"
        )
    fig.suptitle(title, fontsize=11)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sensitivity_figures(out: str | Path, studies: list[SensitivityStudy]) -> list[Path]:
    """``OUT/figures/sensitivity_<task>[-<setting>].png`` per task, and ``sensitivity_avg...`` over
    tasks when there are several (the setting is in the name only when there are several settings)."""
    fig_dir = Path(out) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for study in studies:
        suffix = studies_file_suffix(studies, study)
        for task in study.report_tasks:
            p = sensitivity_heatmaps(study, task, fig_dir / f"sensitivity_{task}{suffix}.png")
            if p is not None:
                written.append(p)
    return written
