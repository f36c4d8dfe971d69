"""Figures (matplotlib, imported lazily; install the ``plots`` extra).

- ``per_class_low_<task>.png``: per-class accuracy on the low-end modality per method (paper Fig. 2b);
- ``embeddings_<task>.png``: a 2-D PCA of the high- and low-end class text embeddings of K-MaT
  with and without L_FGW (paper Fig. 2a; "without" is ablation row 5, CSC+MSC+anchor): one panel
  each, one PCA for both (shared axes, labelled with the variance each PC explains), the seed in the
  title; a colour and one label per class, placed where it covers no marker and no other label;
- ``fgw_<task>.png``: K-MaT's FGW diagnostics per epoch and seed (the plan's mass on matching
  classes, and the mean distance ``||t_i^H - t_i^L||`` between a class's two prompts), with each
  seed's low-end accuracy: a low-end classifier collapsing onto the high-end one shows here; and
  the low-end prompts' mean cosine to their description prototypes (1: the anchor made them the
  prototypes, and the low-end classifier is zero-shot with descriptions).
  Coinciding seeds stay visible (own marker, earlier seeds drawn wider underneath).
- ``sensitivity_<task>.png`` (and ``sensitivity_avg.png`` over tasks): heat maps of K-MaT's mean Lo
  and H over lambda_fgw x lambda_anchor, one panel per alpha (:mod:`kmat.report.sensitivity`).
"""

from __future__ import annotations

import textwrap
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
from kmat.run.experiments import METHOD_DISPLAY, TASK_DISPLAY, display_name, table2_columns
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
    class has no result, so that neither looks like the other. One bar per Table 2 column (the
    paper's six methods first, then the other methods run; not the ablation rows or settings'
    variants)."""

    labels = table2_columns((lab for t, lab in agg if t == task), variants=False)
    if not labels:
        return None
    classes = list(agg[(task, labels[0])]["per_class_low"])
    seeds = sorted({agg[(task, lab)]["low_acc"][2] for lab in labels})
    plt = _plt()
    legend_rows = -(-(len(labels) + 1) // 4)  # four columns, the chance line included
    per_class = max(1.6, 0.15 * len(labels) + 0.4)  # bars stay readable with a dozen methods
    fig, ax = plt.subplots(figsize=(max(6, per_class * len(classes)), 3.2 + 0.3 * legend_rows))
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
            label=display_name(lab),
            color=f"C{j % 10}",
            hatch="///" if j >= 10 else None,  # past ten methods the colours repeat: hatched
            edgecolor="white" if j >= 10 else None,
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


EMBEDDING_VARIANTS = [("kmat", "K-MaT"), ("kmat-r5", "K-MaT without L_FGW (ablation row 5)")]


def _seed_key(seed: int | None) -> tuple[bool, int]:
    return (seed is None, seed or 0)


def _embedding_runs(rows: list[dict], task: str) -> list[tuple[str, dict]]:
    """``[(panel title, row)]``: one run per variant found, with its embeddings file; the lowest seed
    that every variant has (so that both panels show the same seed), else each variant's lowest."""
    by_variant = []
    for lab, title in EMBEDDING_VARIANTS:
        runs = {
            r["seed"]: r
            for r in sorted(rows, key=lambda r: r["folder"], reverse=True)  # a repeated seed: first folder
            if r["task"] == task and r["label"] == lab and RunLayout.of(r["folder"]).embeddings.is_file()
        }
        if runs:
            by_variant.append((title, runs))
    common = set.intersection(*(set(runs) for _, runs in by_variant)) if by_variant else set()
    if common:
        seed = min(common, key=_seed_key)
        return [(title, runs[seed]) for title, runs in by_variant]
    return [(title, runs[min(runs, key=_seed_key)]) for title, runs in by_variant]


def pca_2d(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(coordinates (n, 2), explained variance ratio (2,))`` of the rows of ``points`` (numpy SVD of
    the centred points; each component's sign fixed so that its largest loading is positive). A ratio
    is NaN where the points do not vary at all."""
    x = points.astype(np.float64) - points.mean(axis=0)
    _, s, vt = np.linalg.svd(x, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    coords = np.zeros((len(x), 2))
    k = min(2, len(s))
    coords[:, :k] = x @ vt[:k].T
    var = s**2
    total = var.sum()
    ratio = np.full(2, np.nan)
    if total > 0:
        ratio[:k] = var[:k] / total
        ratio[k:] = 0.0
    return coords, ratio


def _pc_label(k: int, ratio: float) -> str:
    if np.isnan(ratio):
        return f"PC{k} (no variance: the points coincide)"
    return f"PC{k} ({100 * ratio:.1f}% of variance)"


def _step(option: tuple[float, int, float], share: float) -> np.ndarray:
    """The move (pixels) of ``(distance, axis, sign)``, times ``share``."""
    dist, axis, sign = option
    step = np.zeros(2)
    step[axis] = sign * dist * share
    return step


def _overlap_area(
    centres: np.ndarray, half: np.ndarray, boxes: np.ndarray, box_half: np.ndarray
) -> np.ndarray:
    """Per candidate centre (k, 2) with half size ``half`` (2,), the summed overlap (pixels^2) with
    ``boxes`` (m, 2) of half sizes ``box_half`` (m, 2)."""
    if not len(boxes):
        return np.zeros(len(centres))
    over = half + box_half[None] - np.abs(centres[:, None] - boxes[None])  # (k, m, 2)
    return np.clip(over, 0, None).prod(axis=2).sum(axis=1)


def place_labels(
    ax,
    anchors: np.ndarray,
    obstacles: np.ndarray,
    texts: list,
    marker_px: float,
    pad: float = 3.0,
    rings: int = 15,
    rounds: int = 500,
) -> np.ndarray:
    """Moves ``texts`` (centred, in data coordinates) next to their ``anchors`` (data, one per text)
    so that no two text boxes overlap and none covers a marker (``obstacles``: the data points, each
    a square of ``marker_px`` pixels on a side), all inside the axes; returns the centres (pixels).

    Deterministic, in pixels measured with the renderer once the layout and axis limits are final:
    each text in turn takes the first free spot around its anchor, trying first just outside the
    marker on the side away from the centroid of the points, then turning by 22.5-degree steps to
    either side, then ``rings`` rings further out (one text height each); one with no free spot
    takes the least-covered one. Boxes still overlapping are then pushed apart, the cheaper way,
    inside the axes, for at most ``rounds`` rounds."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    to_px = ax.transData.transform
    a = to_px(anchors)
    obs = to_px(obstacles) if len(obstacles) else np.zeros((0, 2))
    frame = ax.get_window_extent(renderer)
    sizes = np.array(
        [[b.width + 2 * pad, b.height + 2 * pad] for b in (t.get_window_extent(renderer) for t in texts)]
    )
    half = sizes / 2
    r = marker_px / 2 + pad
    lo = np.array([frame.x0, frame.y0]) + half
    hi = np.maximum(lo, np.array([frame.x1, frame.y1]) - half)
    centre = obs.mean(axis=0) if len(obs) else a.mean(axis=0)
    d = a - centre
    n = np.hypot(d[:, 0], d[:, 1])
    start = np.where(
        n > 1.0, np.arctan2(d[:, 1], d[:, 0]), np.pi / 2 + 2 * np.pi * np.arange(len(a)) / len(a)
    )
    turns = np.radians(22.5) * np.array([0] + [s * k for k in range(1, 9) for s in (1, -1)][:15])
    obs_half = np.full((len(obs), 2), r - pad)
    c = np.zeros_like(a)
    for i in range(len(a)):
        angle = start[i] + turns  # (16,)
        u = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        support = np.abs(u[:, 0]) * half[i, 0] + np.abs(u[:, 1]) * half[i, 1]
        dist = (r + support)[None, :] + sizes[i, 1] * np.arange(rings + 1)[:, None]  # (rings+1, 16)
        cand = (a[i][None, None] + dist[..., None] * u[None]).reshape(-1, 2)
        cand = np.clip(cand, lo[i], hi[i])
        cost = _overlap_area(cand, half[i], obs, obs_half + pad) + _overlap_area(
            cand, half[i], c[:i], half[:i]
        )
        free = np.flatnonzero(cost <= 0)
        c[i] = cand[free[0] if len(free) else int(np.argmin(cost))]

    def inside(i: int, xy: np.ndarray) -> bool:
        return bool((xy >= lo[i] - 0.5).all() and (xy <= hi[i] + 0.5).all())

    def moves(diff: np.ndarray, gap: np.ndarray) -> list[tuple[float, int, float]]:
        """``(distance, axis, sign)`` that separates two boxes ``diff`` apart needing ``gap`` per
        axis, cheapest first (ties: vertical, then the side already taken)."""
        out = []
        for axis in (1, 0):
            for sign in (1.0, -1.0) if diff[axis] >= 0 else (-1.0, 1.0):
                out.append((gap[axis] - sign * diff[axis] + 0.5, axis, sign))
        return sorted(out, key=lambda m: m[0])

    for _ in range(rounds):
        c = np.clip(c, lo, hi)
        moved = False
        for i in range(len(c)):
            for j in range(i + 1, len(c)):
                diff = c[i] - c[j]
                gap = half[i] + half[j]
                if (np.abs(diff) < gap).all():
                    options = moves(diff, gap)
                    for option in options:  # each moves half the way, both kept inside the axes
                        step = _step(option, 0.5)
                        if inside(i, c[i] + step) and inside(j, c[j] - step):
                            break
                    else:
                        step = _step(options[0], 0.5)
                    c[i] += step
                    c[j] -= step
                    moved = True
            for p in obs:
                diff = c[i] - p
                gap = half[i] + r
                if (np.abs(diff) < gap).all():
                    options = moves(diff, gap)
                    for option in options:  # the text moves, the marker stays
                        step = _step(option, 1.0)
                        if inside(i, c[i] + step):
                            break
                    else:
                        step = _step(options[0], 1.0)
                    c[i] += step
                    moved = True
        if not moved:
            break
    c = np.clip(c, lo, hi)
    inverse = ax.transData.inverted()
    for t, xy in zip(texts, inverse.transform(c), strict=True):
        t.set_position(tuple(xy))
    return c


def _leader(anchor: np.ndarray, centre: np.ndarray, half: np.ndarray, marker_px: float) -> np.ndarray | None:
    """``[[x0, y0], [x1, y1]]`` (pixels): from the anchor's marker edge to the label box's edge, or None
    when the label is next to its marker."""
    d = anchor - centre
    if (np.abs(d) <= half).all():
        return None
    t = min(half[0] / abs(d[0]) if d[0] else np.inf, half[1] / abs(d[1]) if d[1] else np.inf)
    edge = centre + t * d
    gap = anchor - edge
    length = float(np.hypot(*gap))
    if length < marker_px / 2 + 4:
        return None
    start = anchor - gap / length * (marker_px / 2 + 1)
    return np.array([start, edge])


def embeddings_2d(rows: list[dict], task: str, path: Path, classes: list[str] | None = None) -> Path | None:
    """K-MaT's class text embeddings of both modalities with and without L_FGW (paper Fig. 2a): one
    panel each, the same seed in both where there is one (the lowest), one PCA fitted on the points of
    both panels so that they share axes (labelled with the share of variance each PC explains). A
    class has one colour and one label per panel; its high-end embedding is a filled dot, its
    low-end one a hollow square around where it falls, and a dashed line joins the two."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from kmat.run.artifacts import load_embeddings  # verified: a damaged file is refused by name

    runs = _embedding_runs(rows, task)
    if not runs:
        return None
    panels = []
    for title, row in runs:
        emb = load_embeddings(RunLayout.of(row["folder"]).embeddings)
        high, low = emb["high"].numpy(), emb["low"].numpy()
        panels.append((title, row, high, low))
    c = panels[0][2].shape[0]
    if any(p[2].shape[0] != c or p[3].shape[0] != c for p in panels):
        raise KmatError(f"{task}: the K-MaT runs' class embeddings differ in class count; cannot draw them")
    names = list(panels[0][1].get("per_class_low") or {})
    if len(names) != c:
        names = list(classes or [])
    names = [n.replace("_", " ") for n in names] if len(names) == c else [f"class {i}" for i in range(c)]
    xy, ratio = pca_2d(np.concatenate([np.concatenate([p[2], p[3]]) for p in panels]))
    seeds = [p[1]["seed"] for p in panels]
    same_seed = len(set(seeds)) == 1

    plt = _plt()
    colours = [plt.get_cmap("tab10" if c <= 10 else "tab20")(i % 20) for i in range(c)]
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(hi - lo, 1e-6 * max(1.0, float(np.abs(xy).max())))
    span = np.where(span > 0, span, 1.0)
    margin = 0.22 * span.max()
    lo, hi = lo - margin, hi + margin
    aspect = float(np.clip((hi[1] - lo[1]) / (hi[0] - lo[0]), 0.6, 1.0))
    n = len(panels)
    width = max(7.0, 0.6 + 4.9 * n)
    fig, axes = plt.subplots(
        1, n, figsize=(width, 1.8 + 4.6 * aspect), dpi=120, squeeze=False, layout="constrained"
    )
    high_size, low_size = 36.0, 130.0  # points^2: the hollow square is larger than the dot inside it
    dpi_px = fig.dpi / 72.0
    for k, (ax, (title, row, _, _)) in enumerate(zip(axes[0], panels, strict=True)):
        seg = xy[k * 2 * c : (k + 1) * 2 * c]
        h, low_pts = seg[:c], seg[c:]
        for i in range(c):
            ax.plot(
                *zip(h[i], low_pts[i], strict=True), ls="--", lw=1.0, color=colours[i], alpha=0.7, zorder=1
            )
        ax.scatter(
            h[:, 0], h[:, 1], s=high_size, marker="o", c=colours, edgecolors="white", linewidths=0.6, zorder=3
        )
        ax.scatter(
            low_pts[:, 0],
            low_pts[:, 1],
            s=low_size,
            marker="s",
            facecolors="none",
            edgecolors=colours,
            linewidths=1.6,
            zorder=4,
        )
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_box_aspect(aspect)
        ax.set_xlabel(_pc_label(1, ratio[0]))
        ax.set_ylabel(_pc_label(2, ratio[1]))
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
        ax.grid(True, lw=0.4, alpha=0.4)
        ax.set_title(title if same_seed else f"{title}, seed {row['seed']}", fontsize=10)
    handles = [Patch(facecolor=colours[i], label=names[i]) for i in range(c)] + [
        Line2D([], [], ls="", marker="o", ms=6, color="0.25", label="high-end (filled dot)"),
        Line2D(
            [], [], ls="", marker="s", ms=9, mfc="none", mec="0.25", mew=1.6, label="low-end (hollow square)"
        ),
        Line2D([], [], ls="--", lw=1.0, color="0.4", label="joins a class's two embeddings"),
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=min(len(handles), int(width / 2)), fontsize=8
    )
    shots = panels[0][1].get("shots")
    run = ", ".join(
        x
        for x in (
            f"{shots}-shot" if shots else "",
            f"seed {seeds[0]}" if same_seed else "seeds differ, see panels",
        )
        if x
    )
    if n > 1:
        head = f"K-MaT's class text embeddings with and without L_FGW ({run})"
        how = "one PCA of both panels' points, so the panels share their axes"
    else:
        missing = "K-MaT without L_FGW" if panels[0][0] == EMBEDDING_VARIANTS[0][1] else "K-MaT"
        head = f"{panels[0][0]}: class text embeddings ({run})"
        how = f"PCA of the high- and low-end class embeddings; no {missing} run to compare"
    head = textwrap.fill(f"{TASK_DISPLAY.get(task, task)}: {head}", int(width * 72 / 5.8))
    fig.suptitle(head + "\n" + how, fontsize=10)
    fig.canvas.draw()  # the layout, then freeze it: the labels are placed in its pixels
    fig.set_layout_engine("none")
    marker_px = np.sqrt(low_size) * dpi_px
    for k, ax in enumerate(axes[0]):
        seg = xy[k * 2 * c : (k + 1) * 2 * c]
        h, low_pts = seg[:c], seg[c:]
        centre = seg.mean(axis=0)
        far = np.hypot(*(low_pts - centre).T) > np.hypot(*(h - centre).T)
        anchors = np.where(far[:, None], low_pts, h)
        texts = [
            ax.text(
                *anchors[i],
                names[i],
                ha="center",
                va="center",
                fontsize=8,
                color=colours[i],
                zorder=6,
                fontweight="bold",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
            )
            for i in range(c)
        ]
        centres = place_labels(ax, anchors, seg, texts, marker_px)
        inverse = ax.transData.inverted()
        a_px = ax.transData.transform(anchors)
        for i, t in enumerate(texts):
            b = t.get_window_extent(fig.canvas.get_renderer())
            line = _leader(a_px[i], centres[i], np.array([b.width, b.height]) / 2, marker_px)
            if line is not None:
                ax.plot(*inverse.transform(line).T, lw=0.7, color=colours[i], alpha=0.9, zorder=5)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


SEED_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def fgw_diagnostics(rows: list[dict], task: str, path: Path, label: str = "kmat") -> Path | None:
    """K-MaT's FGW diagnostics over epochs, one line per seed (from the runs' histories), and, for
    runs with the anchor, the low-end prompts' mean cosine to their description prototypes. Seeds whose
    curves coincide stay visible: each has its own marker and the earlier ones are drawn wider
    underneath; one legend below both panels, the seeds in the title."""
    runs = sorted(
        (r for r in rows if r["task"] == task and r["label"] == label and r.get("history")),
        key=lambda r: _seed_key(r["seed"]),
    )
    runs = [r for r in runs if any("fgw_plan_diag" in h for h in r["history"])]
    if not runs:
        return None
    plt = _plt()
    panels = [
        ("fgw_plan_diag", "plan mass on matching classes\n(1/C: uniform; 1: each class to itself)"),
        ("dist_hl", "mean ||t_i^H - t_i^L||\n(0: low-end prompts = high-end prompts)"),
    ]
    if any("cos_anchor_low" in h for r in runs for h in r["history"]):  # runs with the anchor term
        panels.append(
            ("cos_anchor_low", "mean cos(t_i^L, low-end description\nprototype) (1: prompts = prototypes)")
        )
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.9), layout="constrained")
    n_classes = len(runs[0]["per_class_low"]) or None
    widths = np.linspace(2.6, 1.2, len(runs)) if len(runs) > 1 else [1.6]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for k, r in enumerate(runs):
            pts = [(h["epoch"], h[key]) for h in r["history"] if key in h]
            if pts:
                e, v = zip(*pts, strict=True)
                ax.plot(
                    e,
                    v,
                    lw=widths[k],
                    marker=SEED_MARKERS[k % len(SEED_MARKERS)],
                    ms=3 + 1.5 * (len(runs) - 1 - k) / max(len(runs) - 1, 1),
                    markevery=max(1, len(e) // 12),
                    alpha=0.85,
                    label=f"seed {r['seed']}: Lo {r['low_acc']:.1f}%",
                    zorder=2 + k,
                )
        if key == "fgw_plan_diag" and n_classes:
            ax.axhline(1 / n_classes, color="black", ls=":", lw=1, label="uniform plan (1/C)", zorder=10)
            ax.set_ylim(0, 1.05)
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(True, lw=0.4, alpha=0.4)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 4), fontsize=8)
    seeds = ", ".join(str(r["seed"]) for r in runs)
    name = METHOD_DISPLAY.get(label, label)
    fig.suptitle(
        f"{TASK_DISPLAY.get(task, task)}: {name}'s FGW alignment during training "
        f"(seed{'s' if len(runs) > 1 else ''} {seeds})",
        fontsize=10,
    )
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
