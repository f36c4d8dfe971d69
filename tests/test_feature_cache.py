"""On-disk feature caches: cached views equal live crops, corrupt entries are rebuilt, keys follow content."""

import json
import shutil

import torch

from kmat.data.task import load_task
from kmat.features import FeatureStore, encode_samples
from kmat.run.config import RunConfig
from kmat.run.runner import run
from kmat.utils.cache import cache_dir


def _cfg(task, out, cache=True, **opts):
    return RunConfig(
        task=str(task),
        out=str(out),
        backbone="unused",
        shots=2,
        seed=3,
        device="cpu",
        feature_cache=cache,
        show_progress=False,
        options={"epochs": 3, **opts},
    )


def test_cached_views_train_exactly_like_live_crops(backbone, toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    live = run(_cfg(toy_task, tmp_path / "live", cache=False), backbone=backbone)
    assert not (tmp_path / "cache" / "features").exists()
    first = run(_cfg(toy_task, tmp_path / "c1"), backbone=backbone)  # encodes and writes the cache
    files = list((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert len(files) >= 3 + 2  # one per epoch view + the two test splits
    store = FeatureStore(disk=True)
    second = run(_cfg(toy_task, tmp_path / "c2"), backbone=backbone, store=store)  # reads it back
    assert store.disk_hits >= 5 and store.misses == 0
    for res in (first, second):
        assert json.dumps(res["metrics"]) == json.dumps(live["metrics"])
        assert [h["total"] for h in res["history"]] == [h["total"] for h in live["history"]]


def test_corrupt_entries_are_rebuilt(backbone, toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    ref = run(_cfg(toy_task, tmp_path / "a"), backbone=backbone)
    files = list((tmp_path / "cache" / "features").rglob("*.safetensors"))
    for i, f in enumerate(files):
        f.write_bytes(b"garbage" if i % 2 else f.read_bytes()[:40])
    again = run(_cfg(toy_task, tmp_path / "b"), backbone=backbone)
    assert json.dumps(again["metrics"]) == json.dumps(ref["metrics"])
    store = FeatureStore(disk=True)
    task = load_task(toy_task)
    encode_samples(backbone, task.low.split("test"), store=store, show_progress=False)
    assert store.disk_hits == 1  # rebuilt entries are valid again


def test_keys_follow_image_content_not_names(backbone, toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    task = load_task(toy_task)
    encode_samples(backbone, task.high.split("test"), store=FeatureStore(disk=True), show_progress=False)
    renamed = tmp_path / "another_name"
    shutil.copytree(toy_task, renamed)
    store = FeatureStore(disk=True)
    feats, _ = encode_samples(
        backbone, load_task(renamed).high.split("test"), store=store, show_progress=False
    )
    assert store.disk_hits == 1  # same pixels under another folder: reused
    victim = load_task(renamed).high.split("test")[0].path
    from PIL import Image

    Image.new("RGB", (40, 40), (255, 0, 0)).save(victim)
    store = FeatureStore(disk=True)
    changed, _ = encode_samples(
        backbone, load_task(renamed).high.split("test"), store=store, show_progress=False
    )
    assert store.disk_hits == 0 and not torch.allclose(changed[0], feats[0])
    assert torch.equal(changed[1:], feats[1:])
    assert cache_dir("features").is_dir()


def test_precision_is_part_of_the_key(backbone, toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    samples = load_task(toy_task).low.split("test")
    a = FeatureStore(disk=True)
    encode_samples(backbone, samples, store=a, show_progress=False)
    backbone.set_precision("bf16")
    try:
        b = FeatureStore(disk=True)
        feats, _ = encode_samples(backbone, samples, store=b, show_progress=False)
        assert b.disk_hits == 0 and torch.isfinite(feats).all()
    finally:
        backbone.set_precision("fp32")


def test_crop_border_is_applied_and_keyed(backbone, toy_task, tmp_path, monkeypatch):
    import dataclasses

    from kmat.data.images import load_image, test_transform

    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    spec = json.loads((toy_task / "task.json").read_text())
    spec["low_end"]["crop_border"] = 5
    (toy_task / "task.json").write_text(json.dumps(spec))
    sample = load_task(toy_task).low.split("test")[0]
    assert sample.crop_border == 5
    img = load_image(sample.path)
    cropped = img.crop((5, 5, img.width - 5, img.height - 5))
    expected = backbone.encode_images(
        test_transform(cropped, backbone.image_size, backbone.mean, backbone.std)[None]
    )
    store = FeatureStore(disk=True)
    got, _ = encode_samples(backbone, [sample], store=store, show_progress=False)
    assert torch.allclose(got, expected, atol=1e-6)
    uncropped, _ = encode_samples(
        backbone, [dataclasses.replace(sample, crop_border=0)], store=store, show_progress=False
    )
    assert store.hits == 0 and not torch.allclose(uncropped, got)


def test_memory_is_used_before_the_disk(backbone, toy_task, tmp_path, monkeypatch):
    """A list already in the store is not read back from disk (a grid shares one store)."""
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    samples = load_task(toy_task).low.split("test")
    store = FeatureStore(disk=True)
    first, _ = encode_samples(backbone, samples, store=store, show_progress=False)
    assert store.misses == len(samples) and store.disk_hits == 0
    again, _ = encode_samples(backbone, samples, store=store, show_progress=False)
    assert torch.equal(first, again) and store.hits == len(samples) and store.disk_hits == 0
    other = FeatureStore(disk=True)  # a new process: the disk entry serves it
    from_disk, _ = encode_samples(backbone, samples, store=other, show_progress=False)
    assert torch.equal(first, from_disk) and other.disk_hits == 1
