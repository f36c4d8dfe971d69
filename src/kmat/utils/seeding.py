"""Seeded random generators that depend only on named parts (stable across runs and platforms)."""

from __future__ import annotations

import hashlib

import numpy as np


def seeded_rng(*parts: object) -> np.random.Generator:
    """A NumPy generator seeded by the sha256 of ``"|".join(parts)`` (first 8 bytes, little-endian)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
