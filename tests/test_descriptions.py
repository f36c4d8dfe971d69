"""Shipped descriptions, their validation, and the prototype cache."""

import json
import re

import pytest
import torch
import torch.nn.functional as F

import kmat.knowledge.prototypes as proto_mod
from kmat.data.task import TaskError
from kmat.knowledge.descriptions import MIN_DESCRIPTIONS, shipped_path, validate_descriptions
from kmat.utils.cache import cache_dir

SHIPPED = {
    "skin1": (
        ["dermoscopy", "clinical_15cm"],
        [
            "actinic_keratosis",
            "basal_cell_carcinoma",
            "melanoma",
            "melanocytic_nevus",
            "squamous_cell_carcinoma",
            "seborrheic_keratosis",
        ],
    ),
    "skin2": (
        ["dermoscopy", "clinical"],
        ["basal_cell_carcinoma", "nevus", "melanoma", "miscellaneous", "seborrheic_keratosis"],
    ),
    "breast": (["mammography", "ultrasound"], ["normal", "benign", "malignant"]),
    "chest": (["ct", "xray"], ["covid19", "common_pneumonia", "normal"]),
    "synthmed": (["synth_mammo", "synth_sono"], ["normal", "benign", "malignant"]),
    "synthderm": (["synth_dermoscopy", "synth_clinical"], ["nevus", "melanoma", "keratosis"]),
}


@pytest.mark.parametrize("task", ["synthmed", "synthderm"])
def test_shipped_synthetic_descriptions_match_the_generator(task):
    from kmat.tools.synthpairs import pairs

    assert json.loads(shipped_path(task).read_text()) == pairs()[task].descriptions()


@pytest.mark.parametrize("task", sorted(SHIPPED))
def test_shipped_descriptions_are_complete_and_unique(task):
    mods, classes = SHIPPED[task]
    path = shipped_path(task)
    assert path is not None
    data = json.loads(path.read_text())
    validate_descriptions(data, classes, mods, str(path), min_count=MIN_DESCRIPTIONS)
    for m in mods:
        for c in classes:
            items = data[m][c]
            norm = {re.sub(r"\W+", " ", s.lower()).strip() for s in items}
            assert len(norm) == len(items) >= 50, (m, c)
            assert all(8 <= len(s.split()) <= 40 for s in items), (m, c)
    # the two modalities of a class are described differently
    for c in classes:
        assert not set(data[mods[0]][c]) & set(data[mods[1]][c])


def test_validator_names_the_missing_class():
    mods, classes = SHIPPED["breast"]
    data = json.loads(shipped_path("breast").read_text())
    del data["ultrasound"]["benign"]
    with pytest.raises(TaskError, match="ultrasound/benign: no descriptions"):
        validate_descriptions(data, classes, mods, "breast.json", min_count=50)


def test_prototypes_formula_and_cache(backbone, loaded_toy_task, monkeypatch):
    from kmat.knowledge.descriptions import load_descriptions

    desc = load_descriptions(loaded_toy_task)
    p1 = proto_mod.description_prototypes(backbone, loaded_toy_task, desc)
    expected = F.normalize(backbone.encode_texts(desc["loscan"]["benign"]).mean(0), dim=-1)
    assert torch.allclose(p1[1, 1], expected, atol=1e-6)
    files = list(cache_dir("prototypes").glob("*.safetensors"))
    assert files

    def boom(*a, **k):
        raise AssertionError("should have come from the cache")

    monkeypatch.setattr(proto_mod, "compute_prototypes", boom)
    assert torch.equal(proto_mod.description_prototypes(backbone, loaded_toy_task, desc), p1)
    monkeypatch.undo()
    for f in files:
        f.write_bytes(b"corrupt")
    assert torch.allclose(proto_mod.description_prototypes(backbone, loaded_toy_task, desc), p1)
    # other descriptions -> other key
    desc2 = json.loads(json.dumps(desc))
    desc2["hiscan"]["normal"] = desc2["hiscan"]["normal"][:1]
    p2 = proto_mod.description_prototypes(backbone, loaded_toy_task, desc2)
    assert not torch.allclose(p2[0, 0], p1[0, 0])
