"""Frozen image features, computed outside the training step and handed to methods.

Training images are encoded one augmented *view* per epoch (view ``e`` seeded by image, ``e`` and
seed, see :mod:`kmat.data.images`), test images once with the test transform. Everything runs in
large no-grad batches; methods only ever see feature tensors.

Two caches, both keyed by everything that changes a feature (backbone identity = name + weights
hash, preprocessing and precision, each image's *content* hash, and the view: ``None`` for the
test transform, else view index, image key and seed of the random crop), never by a dataset name:

- :class:`FeatureStore` keeps features in memory for the runs of one process (a grid);
- with ``disk=True`` it also keeps each requested list of features as one safetensors file under
  ``$KMAT_CACHE/features/``: a test split is encoded once per backbone and reused by every method,
  seed and shot count; view ``e`` of a few-shot subset is encoded once and reused by every method
  and hyper-parameter setting at the same (task, K, seed). Files are written atomically with the
  sha256 of their features; an unreadable, inconsistent or damaged file (checksum mismatch,
  non-finite values) is deleted and rebuilt with a warning. A cache that cannot be written is
  skipped with one warning (see :mod:`kmat.utils.cache`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import torch
from torch import Tensor

from kmat.backbone import Backbone
from kmat.data.images import load_image, test_transform, train_transform
from kmat.data.task import Sample
from kmat.errors import ImageError, OutputError
from kmat.utils.cache import cache_write_failed, file_sha256, optional_cache_dir
from kmat.utils.io import DamagedFileError, atomic_save_safetensors, read_safetensors
from kmat.utils.progress import progress

log = logging.getLogger(__name__)


def preprocessing_key(backbone: Backbone) -> tuple:
    return (backbone.image_size, tuple(backbone.mean), tuple(backbone.std), backbone.precision, "bicubic-v1")


class FeatureStore:
    """Feature cache shared by runs: in memory, and on disk when ``disk`` is true (see module doc)."""

    def __init__(self, disk: bool = False, root: str | Path | None = None) -> None:
        self._data: dict[tuple, Tensor] = {}
        self.disk = disk
        self._root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self._writable = True  # false after a write failed: the cache is read-only for this store

    @staticmethod
    def key(backbone: Backbone, s: Sample, view: int | None, seed: int) -> tuple:
        v = None if view is None else (view, s.rel, seed)
        return (backbone.identity(), preprocessing_key(backbone), file_sha256(s.path), s.crop_border, v)

    # ------------------------------------------------------------------ disk layer
    def root(self) -> Path | None:
        """The cache folder, or ``None`` when the cache is unusable (warned about once)."""
        if self._root is None:
            self._root = optional_cache_dir("features")
            if self._root is None:
                self.disk = False
        return self._root

    def list_path(self, keys: list[tuple]) -> Path | None:
        root = self.root()
        if root is None:
            return None
        digest = hashlib.sha256(json.dumps([list(map(str, k)) for k in keys]).encode()).hexdigest()
        ident = hashlib.sha256(str(keys[0][0]).encode()).hexdigest()[:12] if keys else "empty"
        return root / ident / f"{digest[:32]}.safetensors"

    def load_list(self, path: Path, n: int, meta: dict) -> Tensor | None:
        if not path.is_file():
            return None
        try:
            tensors, saved, _ = read_safetensors(path)
            feats = tensors["features"]
            if feats.ndim != 2 or feats.shape[0] != n or json.loads(saved.get("meta", "{}")) != meta:
                raise ValueError(f"inconsistent entry (shape {tuple(feats.shape)}, want {n} rows)")
            return feats
        except (DamagedFileError, OSError, ValueError, KeyError) as err:  # JSONDecodeError is a ValueError
            log.warning("feature cache entry %s is damaged or invalid (%s); rebuilding it", path, err)
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass  # a read-only cache: the rebuilt features are simply not stored
            return None

    def save_list(self, path: Path, feats: Tensor, meta: dict) -> None:
        if not self._writable:
            return
        if not torch.isfinite(feats).all():
            log.warning("non-finite image features are not cached (%s)", path)
            return
        try:
            atomic_save_safetensors(path, {"features": feats}, metadata={"meta": json.dumps(meta)})
        except (OSError, OutputError) as err:
            self._writable = False
            cache_write_failed(path, err)

    def get(self, key: tuple) -> Tensor | None:
        return self._data.get(key)

    def put(self, key: tuple, feat: Tensor) -> None:
        self._data[key] = feat

    def __len__(self) -> int:
        return len(self._data)


@torch.no_grad()
def encode_samples(
    backbone: Backbone,
    samples: Sequence[Sample],
    view: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    desc: str | None = None,
    show_progress: bool = True,
    store: FeatureStore | None = None,
    nested: bool = False,
) -> tuple[Tensor, Tensor]:
    """Features (N, D) and labels (N,) of ``samples``.

    ``view=None`` uses the test transform; ``view=e`` the seeded random-resized-crop view ``e``.
    Features found in ``store`` are reused; the others are encoded in batches and stored.
    """
    size, mean, std = backbone.image_size, backbone.mean, backbone.std
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    out: list[Tensor | None] = [None] * len(samples)
    keys: list[tuple] = []  # one per sample when there is a store (only read then)
    disk_path: Path | None = None
    meta: dict = {}
    if store is not None:
        keys = [store.key(backbone, s, view, seed) for s in samples]
        out = [store.get(k) for k in keys]  # memory first: a grid's runs share one store
        if samples and all(f is not None for f in out):
            store.hits += len(samples)
            return torch.stack(cast(list[Tensor], out)), labels  # no None left (checked just above)
        if store.disk and samples:
            disk_path = store.list_path(keys)
        if disk_path is not None:
            meta = {
                "backbone": backbone.identity(),
                "prep": list(map(str, preprocessing_key(backbone))),
                "view": view,
                "seed": seed if view is not None else None,
                "n": len(samples),
            }
            feats = store.load_list(disk_path, len(samples), meta)
            if feats is not None:
                store.disk_hits += 1
                for k, f in zip(keys, feats, strict=True):
                    store.put(k, f)
                return feats, labels
    todo: list[int] = []
    for i in range(len(samples)):
        if store is not None:
            if out[i] is not None:
                store.hits += 1
                continue
            store.misses += 1
        todo.append(i)
    bar = progress(
        total=len(todo),
        desc=desc or "encoding images",
        unit="img",
        disable=not show_progress or not todo,
        **({"position": 1} if nested else {}),
    )

    def flush(idx: list[int], batch: list[Tensor]) -> None:
        feats = backbone.encode_images(torch.stack(batch)).cpu()
        for j, f in zip(idx, feats, strict=True):
            out[j] = f
            if store is not None:
                store.put(keys[j], f)
        bar.update(len(batch))

    idx: list[int] = []
    batch: list[Tensor] = []
    for i in todo:
        s = samples[i]
        img = load_image(s.path)
        if s.crop_border:
            b = s.crop_border
            if img.width <= 2 * b or img.height <= 2 * b:
                raise ImageError(f"{s.path}: {img.width}x{img.height} image is too small for crop_border={b}")
            img = img.crop((b, b, img.width - b, img.height - b))
        if view is None:
            batch.append(test_transform(img, size, mean, std))
        else:
            batch.append(train_transform(img, size, mean, std, key=s.rel, view=view, seed=seed))
        idx.append(i)
        if len(batch) == batch_size:
            flush(idx, batch)
            idx, batch = [], []
    if batch:
        flush(idx, batch)
    bar.close()
    if not samples:
        return torch.empty(0, backbone.output_dim), labels
    feats = torch.stack(cast(list[Tensor], out))  # every slot is filled: found in the store or encoded
    if store is not None and disk_path is not None and todo:  # disk_path is only set with a store
        store.save_list(disk_path, feats, meta)
    return feats, labels


class TrainFeatures:
    """Per-epoch training features: view ``e`` of every training image (or one plain view).

    With ``augment=False`` every epoch reuses the test-transform features. Features come from (and
    go to) ``store``: an in-memory one of its own unless the run shares one.
    """

    def __init__(
        self,
        backbone: Backbone,
        samples: Sequence[Sample],
        seed: int,
        augment: bool = True,
        batch_size: int = 64,
        show_progress: bool = True,
        store: FeatureStore | None = None,
    ) -> None:
        self.backbone = backbone
        self.samples = list(samples)
        self.seed = seed
        self.augment = augment
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.store = store if store is not None else FeatureStore()

    def __call__(self, epoch: int) -> tuple[Tensor, Tensor]:
        view = epoch if self.augment else None
        return encode_samples(
            self.backbone,
            self.samples,
            view=view,
            seed=self.seed,
            batch_size=self.batch_size,
            desc=f"train view {epoch}" if view is not None else "train images",
            show_progress=self.show_progress,
            store=self.store,
            nested=True,
        )
