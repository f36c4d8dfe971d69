"""kmat: cross-modal prompt learning on frozen medical vision-language models (K-MaT and baselines)."""

__version__ = "0.1.0"

PRECISIONS = ("fp32", "bf16")  # fp32: the default, for fidelity; bf16: autocast of the frozen towers
