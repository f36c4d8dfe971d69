"""``kmat describe``: write clinical descriptions with an LLM or as a template (--stub), or show the shipped ones."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from kmat.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "describe",
        parents=parents,
        help="write clinical descriptions with an LLM or as a template (--stub), or show the shipped ones",
        description="Ask an OpenAI-compatible chat-completions endpoint for N visual descriptions "
        "per class and modality of a task (API key from $KMAT_LLM_API_KEY or "
        "$OPENAI_API_KEY). The output file is rewritten atomically after every batch, "
        "so an interrupted run resumes. --show TASK prints the shipped descriptions. "
        "--stub writes, offline, a template file from the class and modality names (a few neutral "
        "sentences each, marked '_template'; runs using it are recorded as template-only) to "
        "start with; real descriptions written later replace it.",
        epilog="examples:\n  kmat describe --show breast\n"
        "  kmat describe --stub --task ~/kmat-data/digits   # writes ~/kmat-data/digits/descriptions.json\n"
        "  kmat describe --task breast --model gpt-4o --n 50 --out breast_descriptions.json\n"
        "  kmat describe --task ./my_task --model llama3 --base-url http://localhost:11434/v1 "
        "--out ./my_task/descriptions.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--show", metavar="TASK", default=None, help="print the descriptions of TASK and their counts"
    )
    p.add_argument("--limit", type=int, default=0, help="with --show: at most this many per list (0 = all)")
    p.add_argument(
        "--task", default=None, help="paper task name (skin1, skin2, breast, chest) or task folder"
    )
    p.add_argument(
        "--stub",
        action="store_true",
        help="offline: write a template descriptions.json into the task folder (or --out), "
        "marked template-only, from the class and modality names",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="with --stub: replace an existing descriptions file"
    )
    p.add_argument("--model", default=None, help="model name at the endpoint")
    p.add_argument("--base-url", default="https://api.openai.com/v1", help="OpenAI-compatible API base URL")
    p.add_argument("--n", type=int, default=50, help="descriptions per class and modality (default 50)")
    p.add_argument("--out", default=None, help="output JSON file (resumed if it exists)")
    p.add_argument(
        "--max-retries", type=int, default=5, help="retries per request, with back-off (default 5)"
    )
    p.set_defaults(func=run)


def _task_spec(task: str) -> tuple[dict, Path | None]:
    """task.json of a task folder (a path, or a name under $KMAT_DATA), or the shipped definition
    of a paper task name."""
    folder = Path(task).expanduser()
    root = os.environ.get("KMAT_DATA")
    if (
        not (folder / "task.json").is_file()
        and root
        and (Path(root).expanduser() / task / "task.json").is_file()
    ):
        folder = Path(root).expanduser() / task
    if (folder / "task.json").is_file():
        return json.loads((folder / "task.json").read_text()), folder
    from kmat.data.definitions import load_definition

    return load_definition(task), None


def _names(spec: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(key, display name) of the task's classes and of its two modalities (high-end first)."""
    names = spec.get("classnames", {})
    classes = [(c, names.get(c, c.replace("_", " "))) for c in spec["classes"]]
    missing = [r.split("_")[0] for r in ("high_end", "low_end") if not isinstance(spec.get(r), dict)]
    if missing:
        raise ConfigError(
            f"task {spec.get('task')!r} has no {' and no '.join(missing)}-end modality yet: prepare it "
            f"first (kmat prepare imagefolder --raw DIR --task {spec.get('task')} --modality NAME "
            f"--role {missing[0]})"
        )
    mods = [
        (spec[r]["modality"], spec[r].get("display_name") or spec[r]["modality"].replace("_", " "))
        for r in ("high_end", "low_end")
    ]
    return classes, mods


def _stub(args: argparse.Namespace) -> int:
    from kmat.tools.describe import STUB_TEMPLATES, write_stub_descriptions

    if not args.task:
        raise ConfigError("kmat describe --stub needs --task FOLDER (a prepared task folder)")
    spec, folder = _task_spec(args.task)
    if args.out is None and folder is None:
        raise ConfigError(f"{args.task!r} is not a task folder: pass the folder, or --out FILE")
    out = Path(args.out) if args.out else Path(folder or ".") / "descriptions.json"
    if out.exists() and not args.overwrite:
        raise ConfigError(f"{out} already exists; it is kept (--overwrite replaces it)")
    classes, mods = _names(spec)
    write_stub_descriptions(out, classes, mods, overwrite=args.overwrite)
    print(
        f"wrote {out}: TEMPLATE-ONLY descriptions, {len(STUB_TEMPLATES)} neutral sentences per class "
        f"and modality ({', '.join(m for m, _ in mods)}) from the names alone; runs using them are "
        "marked descriptions_template in result.json. Replace them with real ones (kmat describe "
        f"--task {args.task} --model MODEL --out {out}) or edit them and delete the '_template' key."
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from kmat.knowledge.descriptions import shipped_path

    if args.show:
        spec, folder = _task_spec(args.show)
        path = (
            (folder / "descriptions.json")
            if folder and (folder / "descriptions.json").is_file()
            else shipped_path(spec.get("task", args.show))
        )
        if path is None:
            raise ConfigError(f"no descriptions for task {args.show!r}")
        data = json.loads(path.read_text())
        print(f"descriptions of {spec.get('task', args.show)} ({path}):")
        if isinstance(data, dict) and isinstance(data.get("_template"), str):
            print(f"TEMPLATE-ONLY: {data['_template']}")
        for mod, block in data.items():
            if not isinstance(block, dict):
                continue
            for cls, items in block.items():
                print(f"\n[{mod} / {cls}] {len(items)} descriptions")
                for s in items[: args.limit] if args.limit else items:
                    print(f"  - {s}")
        return 0
    if args.stub:
        return _stub(args)
    if not args.task or not args.model or not args.out:
        raise ConfigError(
            "kmat describe needs --task, --model and --out (or --show TASK, or --stub --task FOLDER offline)"
        )
    from kmat.tools.describe import GeneratorError, generate_descriptions

    spec, _ = _task_spec(args.task)
    classes, mods = _names(spec)
    try:
        data = generate_descriptions(
            classes,
            mods,
            Path(args.out),
            model=args.model,
            base_url=args.base_url,
            n=args.n,
            task_hint=spec.get("title", ""),
            progress=not args.quiet,
            max_retries=args.max_retries,
        )
    except GeneratorError as err:
        raise GeneratorError(
            f"{err} (partial output, if any, is kept in {args.out}; run again to resume)"
        ) from err
    counts = ", ".join(f"{m}/{c}: {len(v)}" for m, b in data.items() for c, v in b.items())
    print(f"wrote {args.out} ({counts})")
    return 0
