"""Published numbers of the K-MaT paper (Zeng & Albarqouni), for ``--compare-paper``.

Source: the paper's Table 2 (accuracy and macro-F1 in %, "acc (F1)", mean of 3 seeds, 16 shots)
and Table 3 (ablation, averaged over the four tasks). Transcribed from `paper/` as printed; note
that a few printed cells are internally inconsistent (Skin I BiomedCLIP H = 37.9 exceeds both Hi
and Lo; the BiomedCLIP Avg. row repeats Skin I), see docs/methods.md.
"""

from __future__ import annotations

# TABLE2[task][method] = {"high": (acc, f1), "low": (acc, f1), "h": (acc, f1)}; task "avg" = Avg.
_T2_ROWS = {
    "skin1": {
        "high": [(34.6, 24.2), (55.5, 42.3), (56.6, 41.6), (44.6, 32.0), (58.3, 39.3), (56.8, 43.1)],
        "low": [(31.7, 21.0), (40.8, 27.1), (40.5, 28.5), (29.8, 24.2), (42.2, 29.1), (46.4, 27.4)],
        "h": [(37.9, 22.9), (47.0, 33.0), (47.2, 33.9), (35.7, 27.5), (49.0, 33.4), (50.9, 33.3)],
    },
    "skin2": {
        "high": [(32.6, 26.9), (34.8, 32.1), (34.6, 32.7), (40.7, 36.7), (35.6, 31.8), (34.8, 32.8)],
        "low": [(17.4, 13.6), (28.5, 26.4), (28.5, 27.3), (18.4, 18.0), (27.0, 24.6), (31.6, 25.0)],
        "h": [(22.7, 18.1), (31.4, 29.0), (31.3, 29.8), (25.4, 24.2), (30.7, 27.7), (33.1, 28.3)],
    },
    "chest": {
        "high": [(34.0, 24.6), (52.0, 47.8), (47.1, 42.3), (37.4, 36.3), (43.4, 40.9), (54.5, 50.8)],
        "low": [(29.9, 32.1), (26.4, 21.8), (26.1, 22.7), (54.5, 35.6), (38.7, 29.2), (40.6, 31.1)],
        "h": [(31.8, 27.9), (35.0, 30.0), (33.6, 29.5), (44.4, 35.9), (40.9, 34.0), (42.3, 35.4)],
    },
    "breast": {
        "high": [(24.4, 19.9), (75.2, 72.8), (70.5, 66.6), (65.0, 59.5), (69.2, 65.0), (73.1, 70.7)],
        "low": [(57.2, 45.2), (27.0, 19.0), (28.0, 16.9), (28.3, 26.6), (36.0, 34.1), (38.4, 36.3)],
        "h": [(34.2, 27.7), (39.7, 30.2), (40.1, 27.0), (39.4, 36.8), (47.4, 44.8), (50.3, 47.9)],
    },
    "avg": {
        "high": [(34.6, 24.2), (54.4, 48.7), (52.2, 45.8), (46.9, 41.1), (51.6, 44.2), (54.8, 49.3)],
        "low": [(34.0, 28.0), (30.7, 23.6), (30.8, 23.9), (32.7, 26.1), (36.0, 29.2), (39.3, 29.9)],
        "h": [(31.7, 24.1), (38.3, 30.5), (38.0, 30.0), (36.2, 31.1), (42.0, 35.0), (44.1, 36.2)],
    },
}
_T2_METHODS = ["zeroshot", "coop", "kgcoop", "cocoop", "biomedcoop", "kmat"]

TABLE2: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    task: {m: {role: rows[role][j] for role in ("high", "low", "h")} for j, m in enumerate(_T2_METHODS)}
    for task, rows in _T2_ROWS.items()
}

# TABLE3[label] = (hi_acc, hi_f1, lo_acc, lo_f1, h_acc, h_f1), averaged over the four tasks
TABLE3: dict[str, tuple[float, float, float, float, float, float]] = {
    "kmat-r1": (53.36, 47.53, 35.27, 25.72, 40.08, 31.85),
    "kmat-r2": (54.02, 48.49, 27.55, 22.71, 35.26, 30.03),
    "kmat-r3": (54.69, 49.17, 34.73, 18.68, 37.95, 25.83),
    "kmat-r4": (54.80, 49.34, 30.95, 20.73, 35.15, 27.82),
    "kmat-r5": (54.69, 49.17, 36.99, 26.58, 41.94, 32.65),
    "kmat-r6": (50.68, 44.70, 30.07, 24.24, 36.67, 30.67),
    "kmat-r7": (53.56, 48.07, 28.18, 22.94, 35.92, 30.29),
    "kmat": (54.80, 49.34, 39.25, 29.92, 44.13, 36.23),
}
