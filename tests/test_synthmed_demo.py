"""SynthMed (both pairs), the demo backbone and a tiny `kmat demo --quick`."""

import hashlib
import json

import pytest
import torch

from kmat.backbone import load_backbone
from kmat.cli import main
from kmat.data.task import load_task
from kmat.tools import synthderm
from kmat.tools.synthmed import caption, sample_image, write_synthmed
from kmat.tools.synthpairs import pairs

TINY = {"train": 4, "val": 2, "test": 3}


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthmed_is_deterministic_per_seed_and_validates(tmp_path):
    a = write_synthmed(tmp_path / "a", seed=0, splits=TINY)
    b = write_synthmed(tmp_path / "b", seed=0, splits=TINY)
    c = write_synthmed(tmp_path / "c", seed=1, splits=TINY)
    assert _digest(a) == _digest(b) != _digest(c)
    task = load_task(a)
    assert task.classes == ["normal", "benign", "malignant"]
    assert len(task.high.split("train")) == 12 and len(task.low.split("test")) == 9
    assert task.high.display_name == "mammogram" and task.low.display_name == "sonogram"


def test_modalities_differ_in_physics():
    """Lesions are bright on the mammogram and dark on the sonogram; the sonogram has a fan mask."""
    import numpy as np

    hi, _ = sample_image(0, "high", "benign", 0, pool="t")
    lo, attrs = sample_image(0, "low", "benign", 0, pool="t")
    hi, lo = np.asarray(hi, float)[..., 0], np.asarray(lo, float)[..., 0]
    assert hi.max() > 200 and lo[0, 0] == 0 and lo[0, -1] == 0  # corners outside the fan are black
    assert attrs.posterior == "enhancement"
    rng = np.random.default_rng(0)
    _, mal = sample_image(0, "low", "malignant", 0, pool="t")
    text = caption(mal, rng, with_class=True)
    assert "sonogram" in text and "malignant lesion" in text


def test_synthderm_is_deterministic_per_seed_and_validates(tmp_path):
    a = synthderm.write_synthderm(tmp_path / "a", seed=0, splits=TINY)
    b = synthderm.write_synthderm(tmp_path / "b", seed=0, splits=TINY)
    c = synthderm.write_synthderm(tmp_path / "c", seed=1, splits=TINY)
    assert _digest(a) == _digest(b) != _digest(c)
    task = load_task(a)
    assert task.name == "synthderm" and task.classes == ["nevus", "melanoma", "keratosis"]
    assert len(task.high.split("train")) == 12 and len(task.low.split("test")) == 9
    assert task.high.display_name == "dermoscopy image" and task.low.display_name == "clinical photograph"
    assert json.loads((a / "descriptions.json").read_text()) == synthderm.descriptions()


def test_the_pairs():
    """Both pairs, far-domain first; 48 px RGB images; random streams in separate namespaces."""
    import numpy as np

    both = pairs()
    assert list(both) == ["synthmed", "synthderm"]
    assert both["synthmed"].namespace != both["synthderm"].namespace
    for pair in both.values():
        for role in ("high", "low"):
            img, attrs = pair.sample_image(0, role, pair.classes[1], 0, pool="t")
            assert np.asarray(img).shape == (48, 48, 3) and attrs.modality == pair.modalities[role][0]


def test_synthderm_acquisitions_differ():
    """The dermoscopy image has the dark ring of the scope and a large lesion; the clinical photograph
    shows the same kind of lesion smaller, on skin, in colour; captions name modality and class."""
    import numpy as np

    rng = np.random.default_rng(0)
    corners_lo = []
    for i in range(4):
        hi, a = synthderm.sample_image(0, "high", "melanoma", i, pool="t")
        lo, b = synthderm.sample_image(0, "low", "melanoma", i, pool="t")
        hi, lo = np.asarray(hi, float), np.asarray(lo, float)
        assert hi[:2, :2].max() < 40  # the scope's dark ring in the corners
        corners_lo.append(lo[:2, :2].mean())
        assert a.structures and not a.surroundings and not b.structures
        assert a.shape == b.shape == "asymmetric" and a.border == b.border == "irregular"
        assert len(a.colours) >= 2  # several colours
        # the lesion's footprint: what changes when the same scene is drawn without it (contrast 0)
        hi0 = np.asarray(synthderm.sample_image(0, "high", "melanoma", i, pool="t", contrast=0)[0], float)
        lo0 = np.asarray(synthderm.sample_image(0, "low", "melanoma", i, pool="t", contrast=0)[0], float)
        area_hi = (np.abs(hi - hi0).max(-1) > 25).mean()
        area_lo = (np.abs(lo - lo0).max(-1) > 25).mean()
        assert area_hi > 1.5 * area_lo > 0  # larger in the dermoscopy image's frame
    assert np.mean(corners_lo) > 60  # mostly skin there
    text = synthderm.caption(b, rng, with_class=True)
    assert "clinical photograph" in text and "melanoma" in text
    _, k = synthderm.sample_image(0, "high", "keratosis", 0, pool="t")
    assert "milia like cysts" in k.structures and k.border == "sharp"


@pytest.fixture(scope="module")
def tiny_demo_backbone(tmp_path_factory):
    from kmat.tools.demo_backbone import build_demo_backbone

    threads = torch.get_num_threads()
    folder = build_demo_backbone(
        tmp_path_factory.mktemp("demo_bb"), n_per_class=6, epochs=1, batch_size=12, show_progress=False
    )
    assert torch.get_num_threads() == threads  # the build's single thread is given back
    return folder


def test_demo_backbone_loads_through_local_dir(tiny_demo_backbone):
    info = json.loads((tiny_demo_backbone / "kmat_demo_backbone.json").read_text())
    assert info["n_per_class"] == 6 and info["pairs"] == ["synthmed", "synthderm"]
    bb = load_backbone(f"local-dir:{tiny_demo_backbone}")
    assert bb.image_size == 48 and bb.output_dim == 64
    img, _ = sample_image(0, "high", "malignant", 0)
    from kmat.data.images import test_transform

    f = bb.encode_images(test_transform(img, 48, bb.mean, bb.std)[None])
    assert f.shape == (1, 64) and torch.isfinite(f).all()
    for text in ("malignant lesion sonogram", "seborrheic keratosis clinical photograph"):
        assert bb._hf_tok.unk_token_id not in bb.token_ids(text)


@pytest.mark.slow
def test_quick_demo_on_tiny_sizes(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--quick",
            "--out",
            str(out),
            "--synth-sizes",
            "4",
            "2",
            "3",
            "--pretrain-images",
            "4",
            "--pretrain-epochs",
            "1",
            "--epochs",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "| Dataset | | BiomedCLIP | CoOp | KgCoOp | CoCoOp | BiomedCoOp | K-MaT |" in printed
    assert (out / "table2.md").is_file() and not (out / "table3.md").exists()
    table = (out / "table2.md").read_text()
    for block in ("| synthderm | Hi |", "| synthmed | Hi |", "| Avg. | Hi |"):
        assert block in table
    for task in ("synthmed", "synthderm"):
        assert len(list((out / "runs" / task).glob("*/*/seed1/result.json"))) == 6


@pytest.mark.parametrize("name", ["synthmed", "synthderm"])
def test_shipped_demo_backbone_is_meaningful(tmp_path, name):
    """The shipped demo backbone loads through local-dir: and its zero-shot accuracy (the zeroshot
    method's prompt) on the first 20 test images per class of each SynthMed pair is clearly above
    chance (1/3) on both modalities."""
    from kmat.features import encode_samples
    from kmat.tools.demo_backbone import demo_backbone_dir, shipped_demo_backbone
    from kmat.tools.synthmed import write_task

    folder = shipped_demo_backbone()
    assert folder is not None and demo_backbone_dir() == folder
    bb = load_backbone(f"local-dir:{folder}")
    task = load_task(write_task(pairs()[name], tmp_path / "s", splits={"train": 1, "val": 1, "test": 20}))
    text = bb.encode_texts([f"a photo of a {c}." for c in task.classnames])
    for role in ("high", "low"):
        feats, labels = encode_samples(bb, task.modality(role).split("test"), show_progress=False)
        acc = ((feats @ text.T).argmax(1) == labels).float().mean().item()
        assert acc > 0.45, (name, role, acc)
