"""SynthMed, the demo backbone and a tiny `kmat demo --quick`."""

import hashlib
import json

import pytest
import torch

from kmat.backbone import load_backbone
from kmat.cli import main
from kmat.data.task import load_task
from kmat.tools.synthmed import caption, sample_image, write_synthmed

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


@pytest.fixture(scope="module")
def tiny_demo_backbone(tmp_path_factory):
    from kmat.tools.demo_backbone import build_demo_backbone

    return build_demo_backbone(
        tmp_path_factory.mktemp("demo_bb"), n_per_class=6, epochs=1, batch_size=12, show_progress=False
    )


def test_demo_backbone_loads_through_local_dir(tiny_demo_backbone):
    info = json.loads((tiny_demo_backbone / "kmat_demo_backbone.json").read_text())
    assert info["n_per_class"] == 6
    bb = load_backbone(f"local-dir:{tiny_demo_backbone}")
    assert bb.image_size == 48 and bb.output_dim == 64
    img, _ = sample_image(0, "high", "malignant", 0)
    from kmat.data.images import test_transform

    f = bb.encode_images(test_transform(img, 48, bb.mean, bb.std)[None])
    assert f.shape == (1, 64) and torch.isfinite(f).all()
    assert bb.token_ids("malignant lesion sonogram")[:2] != [bb._hf_tok.unk_token_id] * 2


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
    runs = list((out / "runs" / "synthmed").glob("*/*/seed1/result.json"))
    assert len(runs) == 6


def test_shipped_demo_backbone_is_meaningful(tmp_path):
    """The shipped demo backbone loads through local-dir: and its zero-shot accuracy on SynthMed's
    first 20 test images per class is clearly above chance (1/3) on both modalities."""
    from kmat.features import encode_samples
    from kmat.tools.demo_backbone import demo_backbone_dir, shipped_demo_backbone

    folder = shipped_demo_backbone()
    assert folder is not None and demo_backbone_dir() == folder
    bb = load_backbone(f"local-dir:{folder}")
    task = load_task(write_synthmed(tmp_path / "s", splits={"train": 1, "val": 1, "test": 20}))
    text = bb.encode_texts([f"a photo of a {c}." for c in task.classnames])
    for role in ("high", "low"):
        feats, labels = encode_samples(bb, task.modality(role).split("test"), show_progress=False)
        acc = ((feats @ text.T).argmax(1) == labels).float().mean().item()
        assert acc > 0.45, (role, acc)
