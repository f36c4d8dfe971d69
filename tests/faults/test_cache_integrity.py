"""Damaged caches are rebuilt, damaged run files are refused, and an unusable cache only costs time.

Damage keeps the safetensors header intact (so the file still parses): the tensor bytes are zeroed
or overwritten with NaN. Files written before checksums existed (plain ``save_file``) still load.
A read-only cache is simulated by a write function that fails with ``EROFS`` when the tests run as
root (``chmod`` does not stop root), and by ``chmod`` otherwise.
"""

import errno
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from kmat.cli import main
from kmat.data.task import load_task
from kmat.errors import CacheError, CheckpointError
from kmat.features import FeatureStore, encode_samples
from kmat.knowledge.prototypes import description_prototypes
from kmat.run.config import RunConfig
from kmat.run.predict import load_run
from kmat.run.runner import evaluate_checkpoint, run
from kmat.utils import io as kio
from kmat.utils.cache import STALE_TMP_S, cache_dir
from kmat.utils.io import CHECKSUM_KEY, read_safetensors

NAN32 = struct.pack("<f", float("nan"))


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch):
    """The unusable-cache warning is given once per process: start each test from none given."""
    from kmat.utils import cache as kcache

    monkeypatch.setattr(kcache, "_WARNED", set())


def _damage(path: Path, how: str) -> None:
    """Overwrite the tensor bytes of a safetensors file, keeping its header (and checksum) as is."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    size = len(blob) - 8 - n
    data = b"\x00" * size if how == "zero" else NAN32 * (size // 4)
    path.write_bytes(blob[: 8 + n] + data)
    assert path.read_bytes()[: 8 + n] == blob[: 8 + n]


def _legacy(path: Path, nan: bool = False) -> None:
    """Rewrite a file as kmat wrote it before checksums (optionally with NaN values)."""
    tensors, meta, verified = read_safetensors(path)
    assert verified
    meta.pop(CHECKSUM_KEY)
    if nan:
        tensors = {k: torch.full_like(v, float("nan")) for k, v in tensors.items()}
    save_file(tensors, str(path), metadata=meta or None)
    assert CHECKSUM_KEY not in (read_safetensors(path, finite=False)[1])


def _cache_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "KMAT_CACHE" in r.getMessage()
    ]


def _cfg(task, out, method="coop", cache=True, epochs=2):
    return RunConfig(
        task=str(task),
        out=str(out),
        backbone="unused",
        method=method,
        shots=2,
        seed=3,
        device="cpu",
        feature_cache=cache,
        show_progress=False,
        options={"epochs": epochs},
    )


def _descriptions(task):
    return {
        mod.name: {c: [f"a {mod.name} image of {c}", f"{c} as seen in {mod.name}"] for c in task.classes}
        for mod in (task.high, task.low)
    }


# ---------------------------------------------------------------------------------------- feature cache
@pytest.mark.parametrize("how", ["zero", "nan"])
def test_damaged_feature_entries_are_rebuilt_not_used(backbone, toy_task, tmp_path, monkeypatch, caplog, how):
    """Zeroed features under an intact header once went into the run (Hi 58.3 -> 33.3) and stayed."""
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    ref = run(_cfg(toy_task, tmp_path / "a"), backbone=backbone)
    files = sorted((tmp_path / "cache" / "features").rglob("*.safetensors"))
    assert files
    for f in files:
        _damage(f, how)
    caplog.set_level(logging.WARNING, logger="kmat")
    again = run(_cfg(toy_task, tmp_path / "b"), backbone=backbone)
    assert json.dumps(again["metrics"]) == json.dumps(ref["metrics"])
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(str(f) in warned for f in files), "each damaged entry is named"
    for f in files:  # rebuilt: valid and verified again
        tensors, _, verified = read_safetensors(f)
        assert verified and tensors["features"].abs().sum() > 0
    store = FeatureStore(disk=True)
    encode_samples(backbone, load_task(toy_task).low.split("test"), store=store, show_progress=False)
    assert store.disk_hits == 1


@pytest.mark.parametrize("nan", [False, True])
def test_feature_entries_without_checksum(backbone, toy_task, tmp_path, monkeypatch, nan):
    """An entry written before checksums is used (unverified), unless it holds non-finite values."""
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    samples = load_task(toy_task).low.split("test")
    ref, _ = encode_samples(backbone, samples, store=FeatureStore(disk=True), show_progress=False)
    (entry,) = (tmp_path / "cache" / "features").rglob("*.safetensors")
    _legacy(entry, nan=nan)
    store = FeatureStore(disk=True)
    got, _ = encode_samples(backbone, samples, store=store, show_progress=False)
    assert torch.equal(got, ref)
    assert store.disk_hits == (0 if nan else 1)


# ---------------------------------------------------------------------------------------- prototypes
@pytest.mark.parametrize("how", ["zero", "nan", "legacy-nan"])
def test_damaged_prototype_entry_is_recomputed(backbone, loaded_toy_task, tmp_path, monkeypatch, caplog, how):
    """NaN prototypes in the cache once crashed every K-MaT run with a message not naming the cache."""
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    desc = _descriptions(loaded_toy_task)
    ref = description_prototypes(backbone, loaded_toy_task, desc)
    (entry,) = (tmp_path / "cache" / "prototypes").glob("*.safetensors")
    if how == "legacy-nan":
        _legacy(entry, nan=True)
    else:
        _damage(entry, how)
    caplog.set_level(logging.WARNING, logger="kmat")
    got = description_prototypes(backbone, loaded_toy_task, desc)
    assert torch.isfinite(got).all() and torch.equal(got, ref)
    assert any(str(entry) in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    tensors, _, verified = read_safetensors(entry)  # rewritten
    assert verified and torch.equal(tensors["prototypes"], ref)


def test_prototype_entry_without_checksum_is_used(backbone, loaded_toy_task, tmp_path, monkeypatch):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))
    desc = _descriptions(loaded_toy_task)
    ref = description_prototypes(backbone, loaded_toy_task, desc)
    (entry,) = (tmp_path / "cache" / "prototypes").glob("*.safetensors")
    _legacy(entry)
    marker = torch.full_like(ref, 0.5)  # a legacy entry is read as it is: show that it was read
    save_file({"prototypes": marker}, str(entry))
    assert torch.equal(description_prototypes(backbone, loaded_toy_task, desc), marker)


# ---------------------------------------------------------------------------------------- run files
@pytest.fixture(scope="module")
def trained_run(backbone, toy_task_master, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    run(_cfg(toy_task_master, out, epochs=1, cache=False), backbone=backbone)
    return out


@pytest.fixture()
def run_copy(trained_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


@pytest.mark.parametrize("how", ["zero", "nan", "legacy-nan"])
def test_damaged_checkpoint_is_refused(backbone, run_copy, capsys, how):
    ckpt = run_copy / "checkpoint.safetensors"
    if how == "legacy-nan":
        _legacy(ckpt, nan=True)
    else:
        _damage(ckpt, how)
    with pytest.raises(CheckpointError) as info:
        evaluate_checkpoint(ckpt, backbone=backbone)
    msg = str(info.value)
    assert str(ckpt) in msg and "train the run again" in msg
    assert ("non-finite" in msg) if how == "legacy-nan" else ("checksum" in msg)
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kmat: error: {ckpt}: damaged") and "Traceback" not in err


@pytest.mark.parametrize("how", ["zero", "nan", "legacy-nan"])
def test_damaged_class_embeddings_are_refused(run_copy, capsys, how):
    emb = run_copy / "class_embeddings.safetensors"
    if how == "legacy-nan":
        _legacy(emb, nan=True)
    else:
        _damage(emb, how)
    with pytest.raises(CheckpointError) as info:
        load_run(run_copy)
    assert str(emb) in str(info.value) and "train the run again" in str(info.value)
    capsys.readouterr()
    assert main(["predict", "--run", str(run_copy), "--images", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kmat: error: {emb}: damaged") and "Traceback" not in err


def test_run_files_without_checksum_still_load(backbone, trained_run, run_copy):
    """Run folders written before this change keep working (read unverified)."""
    ckpt, emb = run_copy / "checkpoint.safetensors", run_copy / "class_embeddings.safetensors"
    _legacy(ckpt)
    _legacy(emb)
    ref = json.loads((trained_run / "result.json").read_text())["metrics"]
    assert json.dumps(evaluate_checkpoint(ckpt, backbone=backbone)) == json.dumps(ref)
    _, loaded = load_run(run_copy)
    _, orig = load_run(trained_run)
    assert loaded.keys() == orig.keys() and all(torch.equal(loaded[k], orig[k]) for k in orig)


def test_written_run_files_carry_a_checksum(trained_run):
    for name in ("checkpoint.safetensors", "class_embeddings.safetensors"):
        assert read_safetensors(trained_run / name)[2], f"{name} has no checksum"


def test_model_weights_are_written_without_checksum(tiny_model_dir):
    """A backbone's identity is the sha256 of its weights file: a rebuilt demo backbone must stay
    byte-identical to the shipped one, so weights get no checksum metadata."""
    from safetensors.torch import save

    tensors, meta, verified = read_safetensors(tiny_model_dir / "open_clip_model.safetensors")
    assert not verified and not meta
    assert save(tensors) == (tiny_model_dir / "open_clip_model.safetensors").read_bytes()


# ---------------------------------------------------------------------------------------- unusable cache
def test_cache_pointing_at_a_file_degrades_with_one_warning(
    backbone, toy_task, tmp_path, monkeypatch, caplog
):
    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "usable"))
    ref = run(_cfg(toy_task, tmp_path / "ref", method="kmat"), backbone=backbone)
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("not a folder")
    monkeypatch.setenv("KMAT_CACHE", str(not_a_folder))
    caplog.set_level(logging.WARNING, logger="kmat")
    got = run(_cfg(toy_task, tmp_path / "r", method="kmat"), backbone=backbone)  # features + prototypes
    assert json.dumps(got["metrics"]) == json.dumps(ref["metrics"])
    warned = _cache_warnings(caplog)
    assert len(warned) == 1 and str(not_a_folder) in warned[0], warned
    assert not_a_folder.read_text() == "not a folder"


def test_read_only_cache_degrades_with_one_warning(backbone, toy_task, tmp_path, monkeypatch, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("KMAT_CACHE", str(cache))
    if os.geteuid() == 0:  # chmod does not stop root: every write under the cache fails instead
        real = kio.atomic_write_bytes

        def read_only(path, data):
            if Path(path).is_relative_to(cache):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
            return real(path, data)

        monkeypatch.setattr(kio, "atomic_write_bytes", read_only)
    else:
        cache.chmod(0o555)
    try:
        caplog.set_level(logging.WARNING, logger="kmat")
        run(_cfg(toy_task, tmp_path / "r", method="kmat"), backbone=backbone)
    finally:
        cache.chmod(0o755)
    warned = _cache_warnings(caplog)
    assert len(warned) == 1 and str(cache) in warned[0], warned
    assert not [p for p in cache.rglob("*") if p.is_file()]
    assert (tmp_path / "r" / "result.json").is_file()


def test_unusable_home_degrades_with_one_warning(backbone, loaded_toy_task, tmp_path, monkeypatch, caplog):
    home = tmp_path / "home-is-a-file"
    home.write_text("")
    monkeypatch.delenv("KMAT_CACHE")
    monkeypatch.setenv("HOME", str(home))
    caplog.set_level(logging.WARNING, logger="kmat")
    samples = loaded_toy_task.low.split("test")
    for _ in range(2):
        store = FeatureStore(disk=True)
        feats, _ = encode_samples(backbone, samples, store=store, show_progress=False)
        assert torch.isfinite(feats).all() and store.disk_hits == 0
        proto = description_prototypes(backbone, loaded_toy_task, _descriptions(loaded_toy_task))
        assert torch.isfinite(proto).all()
    warned = _cache_warnings(caplog)
    assert len(warned) == 1 and str(home) in warned[0], warned


def test_demo_data_needs_the_cache(tmp_path, monkeypatch, capsys):
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("KMAT_CACHE", str(not_a_folder))
    with pytest.raises(CacheError, match="KMAT_CACHE"):
        cache_dir("features")
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmat: error:") and "KMAT_CACHE" in err and str(not_a_folder) in err
    assert "Traceback" not in err


def test_demo_data_write_failure_names_the_cache(tmp_path, monkeypatch):
    from kmat.tools import demo
    from kmat.tools.synthpairs import pairs

    monkeypatch.setenv("KMAT_CACHE", str(tmp_path / "cache"))

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "cache"))

    monkeypatch.setattr(demo, "write_task", refuse)
    with pytest.raises(CacheError, match="KMAT_CACHE"):
        demo.synth_task_dir(next(iter(pairs().values())))


# ---------------------------------------------------------------------------------------- killed writes
def test_orphaned_temp_files_of_killed_writes_are_removed(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    target = cache / "features" / "0123456789ab" / "entry.safetensors"
    code = (
        "import sys; from kmat.utils.io import atomic_write_bytes; atomic_write_bytes(sys.argv[1], b'x' * 99)"
    )
    env = {**os.environ, "KMAT_FAULT_KILL_AT_WRITE": "1"}
    proc = subprocess.run([sys.executable, "-c", code, str(target)], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 137, proc.stderr
    (orphan,) = target.parent.iterdir()  # the real temporary name of a killed atomic write
    assert not target.exists()
    fresh = target.parent / f".other.safetensors.abc{kio.TMP_SUFFIX}"  # a write in progress elsewhere
    fresh.write_bytes(b"")
    kept = target.parent / "old.safetensors"
    kept.write_bytes(b"")
    old = time.time() - STALE_TMP_S - 60
    for p in (orphan, kept):
        os.utime(p, (old, old))
    monkeypatch.setenv("KMAT_CACHE", str(cache))
    assert FeatureStore(disk=True).root() == cache / "features"
    assert sorted(p.name for p in target.parent.iterdir()) == sorted([fresh.name, kept.name])
