"""Frozen image features, computed outside the training step and handed to methods.

Training images are encoded one augmented *view* per epoch (view ``e`` seeded by image, ``e`` and
seed, see :mod:`kmat.data.images`), test images once with the test transform. Everything runs in
large no-grad batches; methods only ever see feature tensors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from kmat.backbone import Backbone
from kmat.data.images import load_image, test_transform, train_transform
from kmat.data.task import Sample
from kmat.progress import progress


class FeatureStore:
    """In-memory store of encoded image features shared by the runs of one process.

    Keyed by everything that changes a feature: backbone identity, preprocessing (size, mean,
    std), the image file (path, size, modification time), and the view (``None`` = test transform;
    else view index, image key and seed of the random crop).
    """

    def __init__(self) -> None:
        self._data: dict[tuple, Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(backbone: Backbone, s: Sample, view: int | None, seed: int) -> tuple:
        st = s.path.stat()
        prep = (backbone.image_size, tuple(backbone.mean), tuple(backbone.std))
        v = None if view is None else (view, s.rel, seed)
        return (backbone.identity(), prep, str(s.path), st.st_size, st.st_mtime_ns, v)

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
) -> tuple[Tensor, Tensor]:
    """Features (N, D) and labels (N,) of ``samples``.

    ``view=None`` uses the test transform; ``view=e`` the seeded random-resized-crop view ``e``.
    Features found in ``store`` are reused; the others are encoded in batches and stored.
    """
    size, mean, std = backbone.image_size, backbone.mean, backbone.std
    out: list[Tensor | None] = [None] * len(samples)
    keys: list[tuple | None] = [None] * len(samples)
    todo: list[int] = []
    for i, s in enumerate(samples):
        if store is not None:
            keys[i] = store.key(backbone, s, view, seed)
            out[i] = store.get(keys[i])
            if out[i] is not None:
                store.hits += 1
                continue
            store.misses += 1
        todo.append(i)
    bar = progress(total=len(todo), desc=desc or "encoding images", unit="img",
                   disable=not show_progress or not todo)

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
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    if not samples:
        return torch.empty(0, backbone.output_dim), labels
    return torch.stack(out), labels  # type: ignore[arg-type]


class TrainFeatures:
    """Per-epoch training features: view ``e`` of every training image (or one plain view).

    With ``augment=False`` every epoch reuses the test-transform features. Views are computed on
    first use and kept in memory for the run.
    """

    def __init__(self, backbone: Backbone, samples: Sequence[Sample], seed: int, augment: bool = True,
                 batch_size: int = 64, show_progress: bool = True, store: FeatureStore | None = None) -> None:
        self.backbone = backbone
        self.samples = list(samples)
        self.seed = seed
        self.augment = augment
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.store = store
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}

    def __call__(self, epoch: int) -> tuple[Tensor, Tensor]:
        view = epoch if self.augment else None
        key = -1 if view is None else view
        if key not in self._cache:
            self._cache.clear()  # one view alive at a time
            self._cache[key] = encode_samples(
                self.backbone, self.samples, view=view, seed=self.seed, batch_size=self.batch_size,
                desc=f"train view {epoch}" if view is not None else "train images",
                show_progress=self.show_progress, store=self.store,
            )
        return self._cache[key]
