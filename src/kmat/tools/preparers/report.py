"""What a preparer did: per-split, per-class counts beside the paper's, problems, files written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kmat.tools.preparers.common import SPLITS, Problem


@dataclass
class ModalityReport:
    """One prepared modality of a task."""

    role: str  # "high_end" or "low_end"
    modality: str
    dataset: str
    manifest: Path
    root: Path
    classes: list[str]
    counts: dict[str, dict[str, int]]  # split -> class -> images (splits incl. "excluded")
    expected: dict[str, int] | None  # split -> images, from the paper
    provenance: str
    sha256: str
    skipped_report: Path | None = None

    def total(self, split: str) -> int:
        return sum(self.counts.get(split, {}).values())


@dataclass
class PrepareReport:
    """Result of :func:`kmat.tools.preparers.prepare_dataset`."""

    dataset: str
    task: str
    task_folder: Path
    task_json: Path
    modalities: list[ModalityReport]
    missing: list[Problem] = field(default_factory=list)
    ambiguous: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    loadable: bool = False  # both modalities of the task are prepared
    train_gap: str = ""  # loadable, but what the default method (kmat) still needs ('' if nothing)
    template: bool = False  # the task's descriptions are a template

    @property
    def written(self) -> list[Path]:
        """Every file this preparation wrote."""
        out = [m.manifest for m in self.modalities]
        out += [m.skipped_report for m in self.modalities if m.skipped_report]
        return out + [self.task_json]

    def format(self, max_problems: int = 20) -> str:
        """A plain-text summary: a count table per modality, then problems, notes and files."""
        lines = [f"{self.dataset} -> task {self.task!r} in {self.task_folder}"]
        for m in self.modalities:
            lines.append("")
            lines.append(
                f"{m.role.replace('_', '-')} modality {m.modality!r} ({m.dataset}); images under {m.root}"
            )
            lines.append(f"  split: {m.provenance}")
            lines.extend("  " + x for x in _table(m))
        problems = [("missing", self.missing), ("ambiguous", self.ambiguous), ("skipped", self.skipped)]
        for name, items in problems:
            if not items:
                continue
            lines.append("")
            lines.append(f"{len(items)} {name} file(s):")
            lines.extend("  " + p.format() for p in items[:max_problems])
            if len(items) > max_problems:
                lines.append(f"  ... and {len(items) - max_problems} more (see the skipped report)")
        if self.notes:
            lines.append("")
            lines.append("notes:")
            lines.extend("  - " + n for n in self.notes)
        lines.append("")
        lines.append("written:")
        lines.extend(f"  {p}" for p in self.written)
        if self.loadable:
            from kmat.tools.preparers.listing import readiness

            state = readiness(True, self.train_gap, self.template, self.task_folder)
            if not self.train_gap:
                state += f": kmat train --task {self.task_folder}"
        else:
            state = "not loadable yet: prepare the task's other modality too"
            done = {m.role for m in self.modalities}
            if self.dataset == "imagefolder" and len(done) == 1:
                other = "low" if "high_end" in done else "high"
                state += (
                    f" (kmat prepare imagefolder --raw DIR --out {self.task_folder.parent} --task {self.task} "
                    f"--modality NAME --role {other})"
                )
        lines.append(f"task {self.task!r}: {state}")
        return "\n".join(lines)


def _table(m: ModalityReport) -> list[str]:
    cols = list(SPLITS) + (["excluded"] if m.total("excluded") else [])
    width = max([len("paper (Table 1)")] + [len(c) for c in m.classes]) + 2
    head = "class".ljust(width) + "".join(c.rjust(9) for c in cols) + "total".rjust(9)
    out = [head]
    for c in m.classes:
        vals = [m.counts.get(s, {}).get(c, 0) for s in cols]
        out.append(c.ljust(width) + "".join(str(v).rjust(9) for v in vals) + str(sum(vals)).rjust(9))
    tot = [m.total(s) for s in cols]
    out.append("total".ljust(width) + "".join(str(v).rjust(9) for v in tot) + str(sum(tot)).rjust(9))
    if m.expected:
        exp = [m.expected.get(s) for s in cols]
        cells = "".join(("-" if v is None else str(v)).rjust(9) for v in exp)
        out.append("paper (Table 1)".ljust(width) + cells + str(sum(v or 0 for v in exp)).rjust(9))
    return out
