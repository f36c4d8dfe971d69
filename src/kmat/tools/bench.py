"""Speed and memory benchmark of a K-MaT run against a reference-style implementation.

Measured in one process, on a random-weight model with BiomedCLIP's layout (``--arch full``:
ViT-B/16 + BERT-base, context 256; ``reduced`` by default: ViT-S/16 + 6-layer BERT):

(a) one K-MaT training step as kmat runs it (cached image features, all 2C prompts in one text
    pass cut to the longest prompt) against a reference-style step (image tower on the batch every
    step, prompts padded to the full 256-token context);
(b) a whole K-MaT run (16 shots x 6 classes, 50 epochs, batch 4: 1200 steps, plus the test
    splits), with caches (views encoded in no-grad batches, 16 on a CPU, 64 on a GPU; "cold": the run encodes its own
    views, "warm": an earlier method of the grid already did), without caches (image tower on each
    batch of 4) and reference-style; steps are timed a few times and extrapolated;
(c) peak memory of a K-MaT run (a child process: peak RSS on CPU, max allocated on CUDA);
(d) the floor: the unavoidable encoder passes (every view and test image once, in kmat's batches,
    and one text forward+backward per step) and how close the K-MaT run comes to it;
(e) the cold-run ceiling: reference run time / time to encode every view and test image once. The
    reference encodes the same views (batch by batch), so no faster training step can take a cold
    run past it; on a CPU, where batching does not make the image tower cheaper, it is about 8x.

It ends with one line ``speedup step=<x> run=<y> floor=<z>`` (step and run: reference time / kmat
time; floor: kmat run time / floor time). Image decoding and cropping cost the same in every
variant and are left out.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

CLASSNAMES = [
    "actinic keratosis",
    "basal cell carcinoma",
    "melanoma",
    "melanocytic nevus",
    "squamous cell carcinoma",
    "seborrheic keratosis",
]
MODALITIES = ["dermoscopy", "clinical photograph"]


def bench_model_dir(arch: str) -> Path:
    from kmat.errors import OutputError
    from kmat.tools.tinymodel import write_tiny_biomedclip
    from kmat.utils.cache import cache_dir, cache_needed_error

    folder = cache_dir(f"bench_model_{arch}")
    if not (folder / "open_clip_config.json").is_file():
        try:
            write_tiny_biomedclip(folder, size=arch, seed=0)
        except (OSError, OutputError) as err:
            raise cache_needed_error(folder, err) from err
    return folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def _kmat_parts(backbone, n_classes: int):
    from kmat.methods.kmat import anchor_loss
    from kmat.ot import fgw_loss
    from kmat.prompts import FactorisedPrompt

    torch.manual_seed(0)
    prompt = FactorisedPrompt(backbone, CLASSNAMES[:n_classes], MODALITIES)
    protos = F.normalize(torch.randn(2, n_classes, backbone.output_dim, device=backbone.device), dim=-1)
    opt = torch.optim.SGD(prompt.parameters(), lr=0.0025, momentum=0.9, weight_decay=5e-4)
    scale = backbone.logit_scale

    def loss_of(t, feats, labels):
        ce = F.cross_entropy(scale * feats @ t[0].T, labels)
        return ce + anchor_loss(t, protos) + fgw_loss(t[0], t[1])

    return prompt, opt, loss_of


def _padded_prompts(prompt, backbone, length: int):
    """Reference style: the same prompts padded to the full context (pads masked)."""
    embeds, mask = prompt.suffixes(prompt.context())
    extra = length - embeds.shape[1]
    if extra > 0:
        pad = backbone.embed_tokens(torch.full((1, 1), backbone.pad_id, device=backbone.device))
        embeds = torch.cat([embeds, pad.expand(embeds.shape[0], extra, -1)], dim=1)
        mask = torch.cat(
            [mask, torch.zeros(mask.shape[0], extra, dtype=mask.dtype, device=mask.device)], dim=1
        )
    return embeds, mask


def measure(
    arch: str = "reduced",
    device: str = "cpu",
    repeats: int = 2,
    shots: int = 16,
    n_classes: int = 6,
    epochs: int = 50,
    batch: int = 4,
    n_test: int = 267,
    encode_batch: int | None = None,
    precision: str = "fp32",
    log=print,
) -> dict:
    """Time the pieces and extrapolate the runs (see module docstring); returns every figure."""
    from kmat.backbone import load_backbone
    from kmat.run.device import encode_batch_size, resolve_device

    dev = resolve_device(device)
    encode_batch = encode_batch or encode_batch_size(dev)
    t0 = time.perf_counter()
    backbone = load_backbone(f"local-dir:{bench_model_dir(arch)}", device=dev).set_precision(precision)
    log(
        f"backbone: {arch} ({sum(p.numel() for p in backbone.model.parameters()) / 1e6:.1f} M parameters, "
        f"context {backbone.context_length}) on {dev}, {precision}; loaded in {time.perf_counter() - t0:.1f}s"
    )
    size = backbone.image_size
    g = torch.Generator().manual_seed(0)
    images_big = torch.randn(encode_batch, 3, size, size, generator=g)
    images_b = torch.randn(batch, 3, size, size, generator=g)
    feats = F.normalize(torch.randn(batch, backbone.output_dim, generator=g), dim=-1).to(dev)
    labels = torch.arange(batch, device=dev) % n_classes
    prompt, opt, loss_of = _kmat_parts(backbone, n_classes)

    def step(t, f):
        loss = loss_of(t, f, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def kmat_step():  # cached features, prompts cut to the longest
        step(prompt(), feats)

    def kmat_step_live():  # image tower on the batch, prompts cut
        step(prompt(), backbone.encode_images(images_b))

    def ref_step():  # image tower on the batch, prompts padded to the full context
        emb, mask = _padded_prompts(prompt, backbone, backbone.context_length)
        step(backbone.encode_prompts(emb, mask).view(2, n_classes, -1), backbone.encode_images(images_b))

    def text_only():
        prompt().sum().backward()

    with torch.no_grad():
        n_calls = max(1, 64 // encode_batch)  # time at least 64 images a repetition
        t_img_big = _time(
            lambda: [backbone.encode_images(images_big) for _ in range(n_calls)], dev, repeats
        ) / (n_calls * encode_batch)
    r: dict[str, Any] = {
        "arch": arch,
        "device": str(dev),
        "precision": precision,
        "encode_batch": encode_batch,
    }
    r["image_encode_per_image_batched_s"] = t_img_big
    r["kmat_step_s"] = _time(kmat_step, dev, repeats)
    r["kmat_step_live_s"] = _time(kmat_step_live, dev, repeats)
    r["text_pass_s"] = _time(text_only, dev, repeats)
    r["reference_step_s"] = _time(ref_step, dev, repeats)
    emb, _ = prompt.suffixes(prompt.context())
    r["prompt_tokens_cut"], r["prompt_tokens_reference"] = int(emb.shape[1]), backbone.context_length

    n_train = shots * n_classes
    steps = max(1, n_train // batch) * epochs
    views = n_train * epochs
    test_s = n_test * t_img_big
    r.update({"steps": steps, "views": views, "n_test": n_test})
    r["run_kmat_s"] = views * t_img_big + test_s + steps * r["kmat_step_s"]
    r["run_kmat_warm_s"] = steps * r["kmat_step_s"]  # views and test features already cached by the grid
    r["run_kmat_no_cache_s"] = steps * r["kmat_step_live_s"] + test_s
    r["run_reference_s"] = steps * r["reference_step_s"] + test_s
    r["floor_s"] = views * t_img_big + test_s + steps * r["text_pass_s"]
    r["speedup_step"] = r["reference_step_s"] / r["kmat_step_s"]
    r["speedup_run"] = r["run_reference_s"] / r["run_kmat_s"]
    r["floor_ratio"] = r["run_kmat_s"] / r["floor_s"]
    r["speedup_run_warm"] = r["run_reference_s"] / r["run_kmat_warm_s"]
    # The reference encodes the same views (batch by batch), so no training-step speed-up can take a cold
    # run past reference time / (time to encode every view and test image once) on this device.
    r["speedup_run_ceiling"] = r["run_reference_s"] / (views * t_img_big + test_s)
    return r


def memory_probe(
    arch: str,
    device: str,
    shots: int = 16,
    n_classes: int = 6,
    encode_batch: int | None = None,
    precision: str = "fp32",
) -> dict:
    """Peak memory of the parts of a K-MaT run (one epoch's views in kmat's batches, training steps)."""
    import resource

    from kmat.backbone import load_backbone
    from kmat.run.device import encode_batch_size, resolve_device

    dev = resolve_device(device)
    encode_batch = encode_batch or encode_batch_size(dev)
    backbone = load_backbone(f"local-dir:{bench_model_dir(arch)}", device=dev).set_precision(precision)
    size = backbone.image_size
    n_views = shots * n_classes
    with torch.no_grad():
        feats = torch.cat(
            [
                backbone.encode_images(torch.randn(min(encode_batch, n_views - i), 3, size, size))
                for i in range(0, n_views, encode_batch)
            ]
        )
    prompt, opt, loss_of = _kmat_parts(backbone, n_classes)
    labels = torch.arange(4, device=dev) % n_classes
    for i in range(3):
        loss = loss_of(prompt(), feats[i * 4 : i * 4 + 4].to(dev), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out = {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    if dev.type == "cuda":
        out["cuda_max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_bench(
    arch: str = "reduced",
    device: str = "cpu",
    repeats: int = 2,
    precision: str = "fp32",
    memory: bool = True,
    log=print,
) -> dict:
    """The whole benchmark, printed; returns its figures."""
    from kmat.run.device import resolve_device

    resolve_device(device)  # an unavailable device fails here, before any model is built
    bench_model_dir(arch)  # build once, before the child process needs it
    mem = {}
    if memory:
        code = (
            "import json, kmat.tools.bench as b; "
            f"print(json.dumps(b.memory_probe({arch!r}, {device!r}, precision={precision!r})))"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode == 0:
            mem = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            log(
                f"memory probe failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}"
            )
    r = measure(arch=arch, device=device, repeats=repeats, precision=precision, log=log)
    r.update(mem)
    ms = lambda s: f"{1000 * s:9.1f} ms"  # noqa: E731
    mins = lambda s: f"{s / 60:9.2f} min"  # noqa: E731
    log(f"(a) one training step, batch 4, {len(CLASSNAMES)} classes x 2 modalities:")
    log(f"    kmat (cached features, {r['prompt_tokens_cut']} prompt tokens)  {ms(r['kmat_step_s'])}")
    log(
        f"    reference-style (image tower + {r['prompt_tokens_reference']} tokens) {ms(r['reference_step_s'])}"
    )
    log(
        f"(b) whole K-MaT run ({r['steps']} steps, {r['views']} training views, {r['n_test']} test images), "
        f"extrapolated:"
    )
    log(f"    kmat with caches          {mins(r['run_kmat_s'])}   (cold: this run encodes its own views)")
    log(
        f"    kmat, views already cached {mins(r['run_kmat_warm_s'])}   (warm: views shared by an earlier method "
        f"at the same task, K, seed)"
    )
    log(f"    kmat without caches       {mins(r['run_kmat_no_cache_s'])}")
    log(f"    reference-style           {mins(r['run_reference_s'])}")
    if "peak_rss_gib" in r:
        log(
            f"(c) peak memory of a K-MaT run: {r['peak_rss_gib']:.2f} GiB RSS"
            + (f", {r['cuda_max_allocated_gib']:.2f} GiB CUDA" if "cuda_max_allocated_gib" in r else "")
        )
    log(
        f"(d) floor (every image once in batches of {r['encode_batch']} + one text pass per step): "
        f"{mins(r['floor_s'])}; "
        f"kmat run / floor = {r['floor_ratio']:.2f}"
    )
    log(
        f"run speed-up with a warm view cache: {r['speedup_run_warm']:.1f}x; the line below uses the cold run"
    )
    log(
        f"cold-run ceiling on this device: {r['speedup_run_ceiling']:.1f}x (reference run / encoding every view "
        f"and test image once, which the reference also does: no faster training step can beat it)"
    )
    log(f"speedup step={r['speedup_step']:.1f} run={r['speedup_run']:.1f} floor={r['floor_ratio']:.2f}")
    return r
