"""Generated splits: stratified by class, grouped by ``group_id``, shared across paired modalities.

Split units are the connected components of rows linked by a shared ``group_id`` (patient, lesion,
scan, image) or a shared ``pair_id`` (the same lesion seen in two modalities), so a patient never
straddles two splits and paired images always land in the same split, for both modalities.

Targets: an integer number of images per (class, split), whose per-split totals are either exact
(``totals``, e.g. the paper's 389/155/236 for all 780 BUSI images) or proportional to ``ratios``,
and whose per-class totals are the class sizes (a controlled rounding of the proportional table).
Units are visited largest first (ties in a seeded random order) and each goes to the split whose
squared deviation from its targets grows least. With one image per unit this meets the targets
exactly; with larger units it is close. Everything depends only on the rows, the seed and the
namespace: not on file-system order, ``PYTHONHASHSEED`` or global random state.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from kmat.tools.preparers.common import SPLITS, PrepareError, Row
from kmat.utils.seeding import seeded_rng


def ratios_of(counts: dict[str, int]) -> dict[str, float]:
    """Split ratios from per-split counts (e.g. the paper's Table 1)."""
    total = sum(counts.get(s, 0) for s in SPLITS)
    if total <= 0:
        raise PrepareError(f"split counts {counts} must have a positive total")
    return {s: counts.get(s, 0) / total for s in SPLITS}


def split_totals(n: int, ratios: dict[str, float]) -> dict[str, int]:
    """Largest-remainder rounding of ``n * ratios`` (sums to ``n``; ties go to the earlier split)."""
    raw = {s: n * ratios.get(s, 0.0) for s in SPLITS}
    out = {s: int(np.floor(raw[s])) for s in SPLITS}
    order = sorted(SPLITS, key=lambda s: (-(raw[s] - out[s]), SPLITS.index(s)))
    for s in order[: n - sum(out.values())]:
        out[s] += 1
    return out


def target_table(class_sizes: dict[str, int], totals: dict[str, int]) -> dict[str, dict[str, int]]:
    """Integer (class, split) targets with row sums = class sizes and column sums = ``totals``.

    Floors of the proportional table, then the leftover units go to the cells with the largest
    fractional parts while both their class and their split still lack units.
    """
    n = sum(class_sizes.values())
    if sum(totals.values()) != n:
        raise PrepareError(f"split totals {totals} do not add up to the {n} images")
    frac: dict[tuple[str, str], float] = {}
    table = {c: {s: 0 for s in SPLITS} for c in class_sizes}
    for c, nc in class_sizes.items():
        for s in SPLITS:
            x = nc * totals[s] / n if n else 0.0
            table[c][s] = int(np.floor(x))
            frac[(c, s)] = x - table[c][s]
    row_left = {c: class_sizes[c] - sum(table[c].values()) for c in class_sizes}
    col_left = {s: totals[s] - sum(table[c][s] for c in class_sizes) for s in SPLITS}
    classes = list(class_sizes)
    cells = sorted(frac, key=lambda cs: (-frac[cs], classes.index(cs[0]), SPLITS.index(cs[1])))
    for c, s in cells:
        if row_left[c] > 0 and col_left[s] > 0 and frac[(c, s)] > 0:
            table[c][s] += 1
            row_left[c] -= 1
            col_left[s] -= 1
    for c in classes:  # whatever rounding could not place: any split still short
        for s in SPLITS:
            k = min(row_left[c], col_left[s])
            if k > 0:
                table[c][s] += k
                row_left[c] -= k
                col_left[s] -= k
    return table


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def split_units(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows grouped into split units (connected by group_id or pair_id); keyed by a stable id."""
    uf = _UnionFind()
    for r in rows:
        g = f"g:{r.group_id or r.path}"
        uf.find(g)
        if r.pair_id:
            uf.union(g, f"p:{r.pair_id}")
    units: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        units[uf.find(f"g:{r.group_id or r.path}")].append(r)
    return dict(units)


def assign_generated_splits(
    rows: list[Row],
    classes: list[str],
    seed: int,
    namespace: str,
    ratios: dict[str, float] | None = None,
    totals: dict[str, int] | None = None,
) -> dict[str, int]:
    """Set ``row.split`` for every row (see module docstring); returns the per-split image counts.

    ``totals`` (exact per-split image counts) wins over ``ratios`` when it sums to ``len(rows)``.
    """
    if not rows:
        return {s: 0 for s in SPLITS}
    if totals is None or sum(totals.values()) != len(rows):
        if ratios is None:
            raise PrepareError("a generated split needs ratios or totals")
        totals = split_totals(len(rows), ratios)
    sizes = {c: 0 for c in classes}
    for r in rows:
        sizes[r.label] += 1
    target = target_table(sizes, totals)
    units = split_units(rows)
    keys = sorted(units)
    perm = seeded_rng(namespace, "split", seed).permutation(len(keys))
    rank = {keys[i]: pos for pos, i in enumerate(perm)}
    order = sorted(keys, key=lambda k: (-len(units[k]), rank[k]))
    cur = {c: {s: 0 for s in SPLITS} for c in classes}
    for key in order:
        counts: dict[str, int] = defaultdict(int)
        for r in units[key]:
            counts[r.label] += 1
        best, best_cost = SPLITS[0], None
        for s in SPLITS:
            cost = sum(u * (2 * (cur[c][s] - target[c][s]) + u) for c, u in counts.items())
            if best_cost is None or cost < best_cost:
                best, best_cost = s, cost
        for c, u in counts.items():
            cur[c][best] += u
        for r in units[key]:
            r.split = best
    return {s: sum(cur[c][s] for c in classes) for s in SPLITS}
