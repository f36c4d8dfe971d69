"""SynthMed's pairs by task name: far-domain ``synthmed`` (mammogram -> sonogram,
:mod:`kmat.tools.synthmed`) and near-domain ``synthderm`` (dermoscopy image -> clinical photograph,
:mod:`kmat.tools.synthderm`). A module of its own so that neither pair module imports the other's."""

from __future__ import annotations

from kmat.tools import synthderm, synthmed
from kmat.tools.synthmed import SynthPair


def pairs() -> dict[str, SynthPair]:
    """SynthMed's pairs by task name, in the demo's order (far-domain first)."""
    return {p.task: p for p in (synthmed.PAIR, synthderm.PAIR)}
