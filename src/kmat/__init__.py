"""kmat: cross-modal prompt learning on frozen medical vision-language models (K-MaT and baselines)."""

__version__ = "0.1.0"
