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


@torch.no_grad()
def encode_samples(
    backbone: Backbone,
    samples: Sequence[Sample],
    view: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    desc: str | None = None,
    show_progress: bool = True,
) -> tuple[Tensor, Tensor]:
    """Features (N, D) and labels (N,) of ``samples``.

    ``view=None`` uses the test transform; ``view=e`` the seeded random-resized-crop view ``e``.
    """
    size, mean, std = backbone.image_size, backbone.mean, backbone.std
    feats: list[Tensor] = []
    batch: list[Tensor] = []
    bar = progress(total=len(samples), desc=desc or "encoding images", unit="img", disable=not show_progress)
    for s in samples:
        img = load_image(s.path)
        if view is None:
            batch.append(test_transform(img, size, mean, std))
        else:
            batch.append(train_transform(img, size, mean, std, key=s.rel, view=view, seed=seed))
        if len(batch) == batch_size:
            feats.append(backbone.encode_images(torch.stack(batch)).cpu())
            bar.update(len(batch))
            batch = []
    if batch:
        feats.append(backbone.encode_images(torch.stack(batch)).cpu())
        bar.update(len(batch))
    bar.close()
    labels = torch.tensor([s.label for s in samples], dtype=torch.long)
    if not feats:
        return torch.empty(0, backbone.output_dim), labels
    return torch.cat(feats), labels


class TrainFeatures:
    """Per-epoch training features: view ``e`` of every training image (or one plain view).

    With ``augment=False`` every epoch reuses the test-transform features. Views are computed on
    first use and kept in memory for the run.
    """

    def __init__(self, backbone: Backbone, samples: Sequence[Sample], seed: int, augment: bool = True,
                 batch_size: int = 64, show_progress: bool = True) -> None:
        self.backbone = backbone
        self.samples = list(samples)
        self.seed = seed
        self.augment = augment
        self.batch_size = batch_size
        self.show_progress = show_progress
        self._cache: dict[int, tuple[Tensor, Tensor]] = {}

    def __call__(self, epoch: int) -> tuple[Tensor, Tensor]:
        view = epoch if self.augment else None
        key = -1 if view is None else view
        if key not in self._cache:
            self._cache.clear()  # one view alive at a time
            self._cache[key] = encode_samples(
                self.backbone, self.samples, view=view, seed=self.seed, batch_size=self.batch_size,
                desc=f"train view {epoch}" if view is not None else "train images",
                show_progress=self.show_progress,
            )
        return self._cache[key]
