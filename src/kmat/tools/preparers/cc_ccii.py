"""CC-CCII (CNCB 2019nCoVR): the CT (high-end) modality of task chest (docs/datasets.md).

Slices live in ``{NCP,CP,Normal}/<patient>/<scan>/<slice>`` (also nested one level down when each
zip was extracted into its own folder, e.g. ``COVID19-1/NCP/...``). Which slices to keep is a
policy (``slice_policy``):

- ``lesion_slices`` (default): NCP/CP slices listed in ``lesions_slices.csv``; Normal scans, which
  have no lesions, by ``normal_policy`` (``middle_k`` (default) or ``all``);
- ``middle_k``: the middle ``k`` slices of every scan (slices ordered by their number);
- ``all``: every slice.

``group_id`` = ``<class folder>/<patient_id>`` (patient ids are only unique within a class folder);
the split is generated at patient level, stratified by class.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from kmat.tools.preparers.base import Collected, Preparer, generated_split
from kmat.tools.preparers.common import (
    IMAGE_EXTS,
    PrepareError,
    Row,
    find_file,
    natural_key,
    norm_label,
    unique_shallowest,
    walk_files,
)

HINT = "is this an extracted CC-CCII (CNCB 2019nCoVR) folder with NCP/, CP/ and Normal/?"
POLICIES = ("lesion_slices", "middle_k", "all")

ScanKey = tuple[str, str, str]  # (class folder as in the label map, patient, scan)


def middle(items: list[str], k: int) -> list[str]:
    """The middle ``k`` of ``items`` (all of them when there are at most ``k``)."""
    if len(items) <= k:
        return list(items)
    start = (len(items) - k) // 2
    return items[start : start + k]


def _exclusions(value: str | Iterable[object] | None, canon: dict[str, str]) -> set[ScanKey]:
    out: set[ScanKey] = set()
    for item in [value] if isinstance(value, str) else (value or []):
        parts = str(item).replace("_", "/").strip("/").split("/")
        if len(parts) != 3 or norm_label(parts[0]) not in canon:
            raise PrepareError(
                f"exclude_scans entry {item!r}: expected CLASS/patient/scan with CLASS in "
                f"{sorted(canon.values())}, e.g. NCP/328/1805"
            )
        out.add((canon[norm_label(parts[0])], parts[1], parts[2]))
    return out


class CcCciiPreparer(Preparer):
    name = "cc_ccii"
    task = "chest"
    roles = ("high_end",)
    description = "CC-CCII CT slices -> chest, ct (slice policy, patient-level split)"
    options: dict[str, object] = {
        "slice_policy": "lesion_slices",  # lesion_slices | middle_k | all
        "k": 10,  # slices per scan for middle_k
        "normal_policy": "middle_k",  # Normal scans under lesion_slices: middle_k | all
        "lesions_csv": None,  # default: lesions_slices.csv found under raw
        "exclude_scans": None,  # e.g. ["NCP/328/1805", "CP/1781/3567"]
        "ratios": None,
    }

    def _scans(
        self, raw: Path, canon: dict[str, str], col: Collected, role: str
    ) -> dict[ScanKey, dict[str, str]]:
        """Scan -> {slice stem (lower case): path}; duplicate slices are reported as ambiguous."""
        found: dict[ScanKey, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for f in walk_files(raw):
            parts = f.split("/")
            if len(parts) < 4 or PurePosixPath(f).suffix.lower() not in IMAGE_EXTS:
                continue
            cls = canon.get(norm_label(parts[-4]))
            if cls is None:
                continue
            found[(cls, parts[-3], parts[-2])][PurePosixPath(parts[-1]).stem.lower()].append(f)
        scans: dict[ScanKey, dict[str, str]] = {}
        for key, slices in found.items():
            scans[key] = {}
            for stem, paths in slices.items():
                if len(paths) == 1 or key in col.extra["excluded"]:
                    scans[key][stem] = paths[0]
                else:
                    item = "/".join(key) + "/" + stem
                    col.problems.add(role, "ambiguous", item, ", ".join(sorted(paths)))
                    col.extra.setdefault("ambiguous", set()).add(item)
        return scans

    def _lesions(
        self, raw: Path, opts: dict, canon: dict[str, str], scans: dict, col: Collected, role: str
    ) -> dict[ScanKey, list[str]]:
        if opts["lesions_csv"]:
            path = Path(str(opts["lesions_csv"])).expanduser()
            if not path.is_file():
                raise PrepareError(f"lesions_csv {path} not found")
        else:
            path = unique_shallowest(
                find_file(raw, ("lesions_slices.csv",), max_depth=2),
                raw,
                "lesions_slices.csv",
                "slice_policy='lesion_slices' needs it "
                "(or pass lesions_csv=PATH, or use slice_policy='middle_k' or 'all')",
            )
        picked: dict[ScanKey, list[str]] = defaultdict(list)
        with open(path, newline="", encoding="utf-8-sig") as fh:
            for lineno, rec in enumerate(csv.reader(fh), start=1):
                cell = next((c.strip() for c in rec if "/" in c), "")
                parts = cell.replace("\\", "/").strip("/").split("/")
                if len(parts) < 4:
                    continue  # header or blank line
                cls = canon.get(norm_label(parts[-4]))
                if cls is None:
                    raise PrepareError(f"{path}:{lineno}: unknown class folder {parts[-4]!r} in {cell!r}")
                key = (cls, parts[-3], parts[-2])
                stem = PurePosixPath(parts[-1]).stem.lower()
                if key in scans and stem in scans[key]:
                    picked[key].append(stem)
                elif key not in col.extra["excluded"]:
                    if "/".join(key) + "/" + stem not in col.extra.get("ambiguous", ()):
                        col.problems.add(
                            role, "missing", cell, "listed in lesions_slices.csv", f"{path.name}:{lineno}"
                        )
        return picked

    def collect(self, raw: Path, spec: dict, opts: dict) -> Collected:
        policy, k = opts["slice_policy"], int(opts["k"])
        if policy not in POLICIES:
            raise PrepareError(f"slice_policy must be one of {list(POLICIES)}, got {policy!r}")
        if opts["normal_policy"] not in ("middle_k", "all"):
            raise PrepareError(f"normal_policy must be 'middle_k' or 'all', got {opts['normal_policy']!r}")
        if k < 1:
            raise PrepareError(f"k must be at least 1, got {k}")
        role = self.roles[0]
        block = spec[role]
        canon = {norm_label(c): c for c in block["label_map"]}
        col = Collected(root=raw, rows={role: []})
        col.extra["excluded"] = excluded = _exclusions(opts["exclude_scans"], canon)
        scans = self._scans(raw, canon, col, role)
        if not scans:
            raise PrepareError(
                f"no slice images in {{NCP,CP,Normal}}/<patient>/<scan>/ folders under {raw}: {HINT}"
            )
        normal = [c for c, v in block["label_map"].items() if v == "normal"]
        lesions = self._lesions(raw, opts, canon, scans, col, role) if policy == "lesion_slices" else {}
        for key in sorted(scans, key=lambda t: tuple(natural_key(x) for x in t)):
            if key in excluded:
                continue
            ordered = sorted(scans[key], key=natural_key)
            if policy == "all":
                stems = ordered
            elif policy == "middle_k":
                stems = middle(ordered, k)
            elif key[0] in normal:
                stems = ordered if opts["normal_policy"] == "all" else middle(ordered, k)
            else:
                stems = sorted(set(lesions.get(key, [])), key=natural_key)
            cls, patient, _ = key
            for stem in stems:
                col.rows[role].append(
                    Row(
                        scans[key][stem],
                        block["label_map"][cls],
                        block["modality"],
                        self.name,
                        f"{cls}/{patient}",
                        "",
                        cls,
                    )
                )
        n_ex = len(excluded & set(scans))
        uses_k = policy == "middle_k" or (policy == "lesion_slices" and opts["normal_policy"] == "middle_k")
        col.notes.append(
            f"{len(scans)} scan(s) found; slice_policy={policy}"
            + (f", k={k}" if uses_k else "")
            + (f"; {n_ex} scan(s) excluded by exclude_scans" if n_ex else "")
        )
        return col

    def split(self, col: Collected, spec: dict, opts: dict) -> dict[str, str]:
        return generated_split(col, spec, self.roles, opts, "cc_ccii", "patient (class folder/patient_id)")
