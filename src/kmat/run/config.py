"""Run configuration: what ``kmat train`` (or a script) asks for, saved with every run.

Each field is declared once, with its help, default and bounds (:func:`kmat.methods.config.option`);
the command line generates its flags from them. Kept free of torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kmat import PRECISIONS
from kmat.errors import ConfigError
from kmat.methods.config import Options, option
from kmat.utils.io import check_output_folder

MAX_SEED = 2**31 - 1


@dataclass
class RunConfig(Options):
    """One training-and-evaluation run.

    ``options`` overrides the method's defaults (the fields of its ``Config`` dataclass), e.g.
    ``{"epochs": 2, "lambda_fgw": 0.5}``; ``None`` values are ignored.
    """

    task: str = field(metadata={"help": "task folder, or the name of a task prepared under the data root"})
    out: str = field(metadata={"help": "output folder of the run"})
    method: str = option("kmat", "method name")
    data_root: str | None = option(None, "root of prepared tasks (None: $KMAT_DATA)")
    backbone: str = option("biomedclip", "biomedclip, demo, hf-hub:ORG/NAME or local-dir:PATH")
    shots: int = option(16, "high-end training images per class (0: all)", min=0)
    seed: int = option(
        1, "seed of the few-shot subset, the initialisation and the order", min=0, max=MAX_SEED
    )
    device: str = option("auto", "auto, cpu, cuda, cuda:N or mps")
    precision: str = option(
        "fp32",
        "fp32 (fidelity) or bf16 autocast of the frozen towers (GPUs, and CPUs with bfloat16 "
        "instructions such as AVX512-BF16 or AMX)",
        choices=PRECISIONS,
    )
    feature_cache: bool = option(
        True, "read and write the on-disk image-feature cache ($KMAT_CACHE/features)"
    )
    augment: bool = option(True, "random resized crops of the training images (off: centre crops)")
    feature_batch_size: int | None = option(
        None, "images per no-grad encoder batch (None: 16 on a CPU, 64 on an accelerator)", min=1
    )
    min_descriptions: int = option(1, "descriptions needed per class and modality", min=1)
    show_progress: bool = option(True, "progress bars")
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "method options"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.backbone.startswith("local-dir:"):  # recorded absolute: a run must not depend on the cwd
            folder = Path(self.backbone.removeprefix("local-dir:")).expanduser()
            if not folder.is_absolute():
                self.backbone = f"local-dir:{folder.resolve()}"
        if not str(self.out).strip():
            raise ConfigError("out must name a folder, got an empty string", field="out")

    def validate(self) -> RunConfig:
        """Check every field again (they may have been changed since construction), and that ``out``
        can be a folder (it is no file and lies under no file: :class:`~kmat.errors.OutputError`).
        The file system is looked at here only, not on construction: a recorded configuration
        whose folder has gone stays readable."""
        self.__post_init__()
        check_output_folder(self.out)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out"] = str(Path(self.out))
        return d

    def replay_dict(self) -> dict[str, Any]:
        """What a run config file holds: every field but ``out`` and ``show_progress``."""
        d = self.to_dict()
        del d["out"], d["show_progress"]
        return d
