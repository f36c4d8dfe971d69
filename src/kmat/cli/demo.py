"""``kmat demo``: the whole paper on built-in synthetic data."""

from __future__ import annotations

import argparse

from kmat.cli._common import add_executor_flags, executor_from_args


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        parents=parents,
        help="the whole paper on built-in synthetic data and a small backbone (offline, CPU)",
        description="Generate (or reuse) the SynthMed benchmark's two tasks (synthmed: mammogram -> "
        "sonogram, far-domain; synthderm: dermoscopy image -> clinical photograph, near-domain) and "
        "load the demo backbone, run Table 2 (six methods, three seeds, both tasks and their average) "
        "and Table 3 (the eight ablation rows, one seed, averaged over both tasks) through the same "
        "driver as kmat reproduce, and print the tables. From an empty cache on a 2-core CPU it "
        "takes about 8 min, --quick (Table 2, one seed) about 2 min (measured: README, "
        '"The demo"); a second run reuses the cached data and features.',
    )
    p.add_argument("--out", default="kmat-demo", help="output folder (default: ./kmat-demo)")
    p.add_argument("--quick", action="store_true", help="Table 2 with seed 1 only; no Table 3")
    p.add_argument(
        "--table",
        choices=["2", "2+"],
        default="2",
        help="2: Table 2 with the paper's six methods (default); 2+: Table 2+, the paper's six then every "
        "other registered method (ProGrad, the adapters, ...); Table 3 is run either way (not with --quick)",
    )
    p.add_argument("--device", default="cpu")
    adv = p.add_argument_group("advanced (smaller or different runs)")
    adv.add_argument("--backbone", default=None, help="use this backbone instead of the demo backbone")
    adv.add_argument("--epochs", type=int, default=None, help="override every method's epochs")
    adv.add_argument(
        "--synth-sizes",
        type=int,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=None,
        help="images per class and split of each SynthMed task (default: 100 20 40 each)",
    )
    adv.add_argument(
        "--pretrain-images",
        type=int,
        default=None,
        help="demo backbone: images per class and modality of each pair",
    )
    adv.add_argument("--pretrain-epochs", type=int, default=None, help="demo backbone: pre-training epochs")
    add_executor_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmat.tools.demo import run_demo

    splits = dict(zip(("train", "val", "test"), args.synth_sizes, strict=True)) if args.synth_sizes else None
    params = {"n_per_class": args.pretrain_images, "epochs": args.pretrain_epochs}
    params = {k: v for k, v in params.items() if v is not None}
    executor = executor_from_args(args)
    run_demo(
        args.out,
        quick=args.quick,
        backbone=args.backbone,
        epochs=args.epochs,
        splits=splits,
        backbone_params=params or None,
        device=args.device,
        show_progress=not args.quiet,
        executor=executor,
        wide=args.table == "2+",
    )
    return 0
