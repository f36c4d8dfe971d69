"""Quickstart: train K-MaT on the toy task, load the run, classify low-end images, plot.

Runs offline in about ten seconds on a CPU: the toy task (synthetic "hiscan" / "loscan" images)
and a tiny random-weight BiomedCLIP-shaped model are written into the output folder first. With a
real task and backbone only the ``kmat.train`` call changes (``backbone="biomedclip"``, the
published epochs).

    python examples/quickstart.py [OUT]        # default OUT: ./quickstart-out
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

import kmat
from kmat.tools.tinymodel import write_tiny_biomedclip
from kmat.tools.toy import write_toy_task


def main(out: Path) -> None:
    task = write_toy_task(out / "toy", n_train=4, n_val=4, n_test=3, size=40)
    model = write_tiny_biomedclip(out / "tiny-model", size="tiny", seed=0)

    # 1. train: run settings (shots, seed, device, ...) and method options (epochs, ...) as keywords
    run = kmat.train(
        task,
        method="kmat",
        out=out / "runs" / "kmat-seed1",
        backbone=f"local-dir:{model}",
        shots=4,
        seed=1,
        device="cpu",
        epochs=3,
        show_progress=False,
    )
    print(run)
    print("test metrics (%):", run.metrics)

    # 2. load it again from its folder (what a notebook or a deployment does)
    run = kmat.load_run(out / "runs" / "kmat-seed1", device="cpu")
    print("classes:", run.classes, "| low-end class embeddings:", tuple(run.class_embeddings["low"].shape))

    # 3. classify low-end images: paths, PIL images or image tensors
    images = sorted((task / "images" / "loscan").glob("*_test_*.png"))
    preds = run.predict(images, modality="low")
    for name, label, probs in zip(preds.names, preds.labels, preds.probabilities, strict=True):
        print(f"{Path(name).name:28s} -> {label:10s} p={float(probs.max()):.3f}")
    same = run.predict([Image.open(p) for p in images[:2]])
    assert same.labels == preds.labels[:2]

    # 4. plot (optional: needs matplotlib)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no figure")
        return
    fig, ax = plt.subplots(figsize=(6, 3))
    im = ax.imshow(preds.probabilities.numpy().T, aspect="auto", vmin=0, vmax=1, cmap="viridis")
    ax.set_yticks(range(len(preds.classes)), preds.classes)
    ax.set_xlabel("low-end test image")
    ax.set_title("class probabilities (low-end prompts)")
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(out / "quickstart.png", dpi=100)
    print(f"wrote {out / 'quickstart.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "quickstart-out").resolve())
