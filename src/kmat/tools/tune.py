"""Hyper-parameter search over a method's options (``kmat tune``), with Optuna.

A *search space* names method options and their ranges (:func:`parse_space`)::

    lambda_anchor=0.1:10:log   log-uniform float in [0.1, 10]
    lambda_fgw=0:3             uniform float (an int option gives uniform ints)
    n_ctx=2:8:int              integers in [2, 8] (``:int:log`` for log-spaced ones)
    fgw_metric=euclidean,cosine  one of these values (categorical)

Every name must be an option of the method's config and every bound (and value) must be one the
option accepts (:mod:`kmat.methods.config`); otherwise a :class:`ConfigError`.

A trial trains the configuration once per tuning seed (:func:`kmat.run.trial.score_trial`) and its
objective is the mean over the seeds of the validation accuracy (%) of the final model on the full
validation split of ``select_on``:

- ``high-val`` (the default; the paper's protocol): the high-end validation split. No low-end image
  or label is read before the final evaluation (the low-end manifest is not even opened).
- ``low-val``: the low-end validation split. This peeks at the target modality, so every result it
  produces says ``"protocol": "low-val (not strict zero-shot)"``.

The driver (:func:`search`) uses Optuna's ask/tell interface: it asks up to ``runner.slots`` trials
at once, hands each trial's runs (one per seed) to a :class:`TrialRunner` and tells Optuna a
trial's mean objective once its last run is back. The runner is :class:`LocalTrialRunner` (this
process, one run after another: one trial at a time) or, with ``--executor ray``,
:class:`kmat.tools.ray_trials.RayTrialRunner` (every run a Ray task; ``--workers`` trials in flight;
TPE's constant liar counts the trials in flight as bad ones so that trials asked together spread
out). A trial is a function of its parameters and seed, so both give the same objectives with one
trial at a time. The study lives in ``OUT/optuna.db`` (SQLite): a tune that was interrupted
resumes when the same command is run again (finished trials are kept; a trial that was running,
including one a killed driver asked and never told, is marked interrupted and does not count; new
trials run until ``trials`` have finished). Then the best configuration is run for real on each
seed (``OUT/final/seed<S>``: both test splits; with Ray, as Ray tasks written here, as a grid does).

Outputs in ``OUT``: ``trials.csv``, ``best_config.json`` (a run config ``kmat train --config``
accepts), ``final/seed<S>/``, ``table2.md`` and ``results.csv`` (the final runs, as ``kmat table
OUT`` writes them: a low-val tune's marked not strict zero-shot), ``tune.png`` (objective per trial
with the running best, and the objective against each parameter) and ``tune.json`` (the summary).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import statistics
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kmat.errors import ConfigError, KmatError
from kmat.methods.config import OptionInfo, check_value, options_of, parse_value, type_name
from kmat.run.config import MAX_SEED, RunConfig
from kmat.run.layout import FINAL_DIR
from kmat.run.schema import NOT_STRICT
from kmat.run.trial import TrialFailure, TrialRunner

if TYPE_CHECKING:
    from kmat.tools.ray_executor import RayExecutor

log = logging.getLogger(__name__)

STUDY_NAME = "kmat-tune"
SELECT_ON = {"high-val": "high", "low-val": "low"}
PROTOCOL = {"high-val": "high-val", "low-val": f"low-val ({NOT_STRICT})"}
SAMPLERS = ("tpe", "random")
CATEGORICAL_TYPES = (bool, int, float, str, type(None))


# --------------------------------------------------------------------------- search space
@dataclass(frozen=True)
class SpaceParam:
    """One searched option: a float or int range (``log`` spaced or not) or a list of values."""

    name: str
    kind: str  # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    text: str = ""  # as given

    def distribution(self) -> Any:
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.kind == "categorical":
            return CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), log=self.log)

    def spec(self) -> str:
        """The canonical text of the parameter (compared when a tune resumes)."""
        if self.kind == "categorical":
            return f"{self.name}={','.join(c if isinstance(c, str) else json.dumps(c) for c in self.choices)}"
        kind = ":int" if self.kind == "int" else ""
        return f"{self.name}={self.low:g}:{self.high:g}{kind}{':log' if self.log else ''}"


def _base(info: OptionInfo) -> str:
    return type_name(info.type).removesuffix(" | None")


def parse_space(items: Sequence[str], method: str) -> list[SpaceParam]:
    """The search space of ``items`` (``NAME=LOW:HIGH[:int][:log]`` or ``NAME=V1,V2,...``) for
    ``method``; each name, bound and value is checked against the method's options."""
    from kmat.methods import get_method

    cls = get_method(method).Config
    known = options_of(cls)
    if not items:
        raise ConfigError("a search space needs at least one NAME=LOW:HIGH or NAME=V1,V2 entry")
    out: list[SpaceParam] = []
    for item in items:
        name, sep, spec = item.partition("=")
        name, spec = name.strip(), spec.strip()
        where = f"search space {item!r}"
        if not sep or not name or not spec:
            raise ConfigError(f"{where}: expected NAME=LOW:HIGH[:log|:int] or NAME=V1,V2,...")
        if name not in known:
            raise ConfigError(
                f"{where}: method {method!r} has no option {name!r}; its options: {sorted(known)}"
            )
        if any(p.name == name for p in out):
            raise ConfigError(f"{where}: {name} is searched twice")
        info = known[name]
        try:
            out.append(_parse_one(name, spec, info, cls.__name__, item))
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}") from None
    return out


def _parse_one(name: str, spec: str, info: OptionInfo, owner: str, text: str) -> SpaceParam:
    base = _base(info)
    if ":" in spec:
        low_s, high_s, *flags = (s.strip() for s in spec.split(":"))
        bad = [f for f in flags if f not in ("log", "int")]
        if bad or len(flags) != len(set(flags)):
            raise ConfigError(f"unknown or repeated range flag(s) {flags}; use :log and/or :int")
        if base not in ("float", "int"):
            raise ConfigError(f"{name} is a {base} option: give its values instead, e.g. {name}=V1,V2")
        integer = "int" in flags or base == "int"
        try:
            low: float = int(low_s) if integer else float(low_s)
            high: float = int(high_s) if integer else float(high_s)
        except ValueError:
            kind = "integers" if integer else "numbers"
            raise ConfigError(f"the bounds must be {kind}, got {low_s!r} and {high_s!r}") from None
        for v in (low, high):
            check_value(info, v, owner)
        if not low < high:
            raise ConfigError(f"the lower bound must be below the upper one, got {low:g}:{high:g}")
        log = "log" in flags
        if log and low <= 0:
            raise ConfigError(f"a :log range needs a lower bound > 0, got {low:g}")
        return SpaceParam(name, "int" if integer else "float", low, high, log, text=text)
    values = [parse_value(info, v) for v in spec.split(",")]
    choices = tuple(dict.fromkeys(check_value(info, v, owner) for v in values))
    if len(choices) < 2:
        raise ConfigError("give a range LOW:HIGH or at least two different values (fix an option with -o)")
    if not all(isinstance(c, CATEGORICAL_TYPES) for c in choices):
        raise ConfigError(f"values of a {base} option cannot be searched")
    return SpaceParam(name, "categorical", choices=choices, text=text)


# --------------------------------------------------------------------------- settings
@dataclass
class TuneSettings:
    """What ``kmat tune`` searches and how. ``run`` holds other :class:`RunConfig` fields (backbone,
    shots, data_root, device, precision, ...); ``options`` fixed method options."""

    task: str
    out: str
    space: list[SpaceParam]
    method: str = "kmat"
    trials: int = 20
    seeds: tuple[int, ...] = (1,)
    select_on: str = "high-val"
    sampler: str = "tpe"
    sampler_seed: int | None = 0
    run: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    final: bool = True
    show_progress: bool = False

    def check(self) -> None:
        if self.select_on not in SELECT_ON:
            raise ConfigError(f"select_on must be one of {list(SELECT_ON)}, got {self.select_on!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}")
        if self.trials < 1:
            raise ConfigError(f"the number of trials must be >= 1, got {self.trials}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be one or more different seeds, got {list(self.seeds)}")
        both = sorted(set(self.options) & {p.name for p in self.space})
        if both:
            raise ConfigError(f"option(s) {both} are both searched and fixed; drop one")
        from kmat.methods import get_method
        from kmat.methods.config import resolve_config

        resolve_config(get_method(self.method).Config, self.options)  # fixed options are valid
        for s in self.seeds:
            self.run_config(s, {}, "x")  # run settings are valid

    def run_config(self, seed: int, params: dict[str, Any], out: str | Path) -> RunConfig:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seed must be in [0, {MAX_SEED}], got {seed}", field="seed")
        return RunConfig(
            task=self.task,
            out=str(out),
            method=self.method,
            seed=seed,
            **{**self.run, "show_progress": self.show_progress},
            options={**self.options, **params},
        )

    def identity(self) -> dict[str, Any]:
        """What a resumed tune must share with the one in its folder (not ``trials`` nor the sampler)."""
        return {
            "task": self.task,
            "method": self.method,
            "space": [p.spec() for p in self.space],
            "seeds": list(self.seeds),
            "select_on": self.select_on,
            "run": {k: v for k, v in sorted(self.run.items()) if k != "show_progress"},
            "options": dict(sorted(self.options.items())),
        }

    @property
    def protocol(self) -> str:
        return PROTOCOL[self.select_on]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as err:  # pragma: no cover - optional dependency
        raise KmatError("kmat tune needs Optuna: pip install 'kmat[cluster]'") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna: Any, settings: TuneSettings) -> Any:
    if settings.sampler == "random":
        return optuna.samplers.RandomSampler(seed=settings.sampler_seed)
    # constant liar: a trial still running counts as a bad one, so that trials asked together (Ray,
    # --workers > 1) spread out; one trial at a time never has another running: the same samples
    return optuna.samplers.TPESampler(seed=settings.sampler_seed, constant_liar=True)


def open_study(settings: TuneSettings, optuna: Any | None = None) -> Any:
    """The study in ``OUT/optuna.db`` (created, or loaded when it exists; a study of another search
    is a :class:`ConfigError`). Trials left *running* by a killed tune are marked failed and
    ``interrupted`` (they do not count towards ``trials``)."""
    optuna = optuna or _optuna()
    db = Path(settings.out) / "optuna.db"
    study = optuna.create_study(
        storage=f"sqlite:///{db.resolve()}",
        study_name=STUDY_NAME,
        direction="maximize",
        sampler=_sampler(optuna, settings),
        load_if_exists=True,
    )
    mine = json.loads(json.dumps(settings.identity()))
    theirs = study.user_attrs.get("kmat_tune")
    if theirs is None:
        study.set_user_attr("kmat_tune", mine)
    elif theirs != mine:
        diff = [f"{k}: {theirs.get(k)!r} -> {mine.get(k)!r}" for k in mine if theirs.get(k) != mine.get(k)]
        raise ConfigError(
            f"{db}: holds a tune of another search ({'; '.join(diff[:3])}); use another output "
            "folder, or the same settings to resume it"
        )
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        log.info("trial #%d was interrupted; it does not count", t.number)
    return study


def _finished(study: Any, optuna: Any) -> int:
    TS = optuna.trial.TrialState
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state == TS.COMPLETE or (t.state == TS.FAIL and not t.user_attrs.get("interrupted"))
    )


# --------------------------------------------------------------------------- outputs
def _state(t: Any) -> str:
    name = t.state.name.lower()
    if name == "fail":
        return "interrupted" if t.user_attrs.get("interrupted") else "failed"
    return name


def write_trials_csv(study: Any, settings: TuneSettings, path: Path) -> None:
    from kmat.utils.io import atomic_write_bytes

    names = [p.name for p in settings.space]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "number",
            "state",
            "objective",
            *names,
            *(f"objective_seed{s}" for s in settings.seeds),
            "duration_s",
            "error",
        ]
    )
    for t in study.get_trials(deepcopy=False):
        per_seed = t.user_attrs.get("per_seed", {})
        w.writerow(
            [
                t.number,
                _state(t),
                "" if t.value is None else f"{t.value:.4f}",
                *(t.params.get(n, "") for n in names),
                *(_fmt(per_seed.get(str(s))) for s in settings.seeds),
                _fmt(t.user_attrs.get("duration_s"), 2),
                t.user_attrs.get("error", ""),
            ]
        )
    atomic_write_bytes(path, buf.getvalue().encode())


def _fmt(v: float | None, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def plot_study(study: Any, settings: TuneSettings, path: Path, title: str) -> Path:
    """``tune.png``: the objective of every trial with the running best (left), and the objective
    against each searched parameter (right; at most four)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [t for t in study.get_trials(deepcopy=False) if t.value is not None]
    failed = [t.number for t in study.get_trials(deepcopy=False) if _state(t) == "failed"]
    shown = settings.space[:4]
    fig, axes = plt.subplots(
        1,
        1 + len(shown),
        figsize=(4.6 + 3.0 * len(shown), 3.6),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.6] + [1.0] * len(shown)},
    )
    ax = axes[0][0]
    xs = [t.number for t in done]
    ys = [float(t.value) for t in done]
    best_i = max(range(len(ys)), key=ys.__getitem__) if ys else None
    if ys:
        ax.scatter(xs, ys, c=xs, cmap="viridis", s=28, zorder=3, label="trial")
        running, best = [], -math.inf
        for y in ys:
            best = max(best, y)
            running.append(best)
        ax.step(xs, running, where="post", color="tab:red", lw=1.6, label="best so far")
        assert best_i is not None
        ax.scatter(
            [xs[best_i]],
            [ys[best_i]],
            marker="*",
            s=180,
            color="tab:red",
            zorder=4,
            label=f"best: #{xs[best_i]} ({ys[best_i]:.2f})",
        )
    if failed:
        lo = min(ys) if ys else 0.0
        ax.scatter(failed, [lo] * len(failed), marker="x", color="grey", label="failed")
    from matplotlib.ticker import MaxNLocator, NullFormatter

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial (colour: order)")
    ax.set_ylabel(f"{SELECT_ON[settings.select_on]}-end val accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=4, frameon=False)
    for j, p in enumerate(shown, start=1):
        a = axes[0][j]
        vals = [t.params.get(p.name) for t in done]
        if p.kind == "categorical":
            index = {json.dumps(c): i for i, c in enumerate(p.choices)}
            px = [index[json.dumps(v)] for v in vals]
            a.set_xticks(range(len(p.choices)), [str(c) for c in p.choices], fontsize=7)
            a.set_xlim(-0.5, len(p.choices) - 0.5)
        else:
            px = vals
            assert p.low is not None and p.high is not None
            pad = 0.0 if p.log else 0.03 * (p.high - p.low)
            a.set_xlim(p.low - pad, p.high + pad)  # the searched range
            if p.log:
                a.set_xscale("log")
                a.set_xlim(p.low / 1.15, p.high * 1.15)
                a.xaxis.set_minor_formatter(NullFormatter())
            elif p.kind == "int":
                a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.scatter(px, ys, c=xs, cmap="viridis", s=22)
        if best_i is not None:
            a.scatter([px[best_i]], [ys[best_i]], marker="*", s=150, color="tab:red", zorder=4)
        a.set_xlabel(f"{p.name} ({p.spec().partition('=')[2]})")
        a.grid(alpha=0.3)
        if j > 1:
            a.tick_params(labelleft=False)
        a.sharey(ax)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _mean_metrics(results: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for role in ("high", "low", "h"):
        out[role] = {}
        for k in ("acc", "macro_f1"):
            vals = [r["metrics"][role][k] for r in results]
            out[role][k] = statistics.fmean(vals)
            out[role][f"{k}_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return out


# --------------------------------------------------------------------------- the tune
def trial_config(settings: TuneSettings, params: dict[str, Any], seed: int) -> RunConfig:
    """The run config of a trial's run at ``seed`` (its ``out`` is never written: a trial writes nothing)."""
    return settings.run_config(seed, params, Path(settings.out) / "trials")


def make_trial_fn(
    settings: TuneSettings, backbone: Any, store: Any, task: Any
) -> Callable[[dict[str, Any], int], dict[str, Any]]:
    """``fn(params, seed) -> score`` (:func:`kmat.run.trial.score_trial`) with shared resources."""
    from kmat.run.trial import score_trial

    role = SELECT_ON[settings.select_on]

    def fn(params: dict[str, Any], seed: int) -> dict[str, Any]:
        return score_trial(
            trial_config(settings, params, seed), role, backbone=backbone, store=store, task=task
        )

    return fn


class LocalTrialRunner:
    """Trials in this process, one run after another, sharing the backbone and feature store of ``fn``
    (:func:`make_trial_fn`)."""

    slots = 1

    def __init__(self, fn: Callable[[dict[str, Any], int], dict[str, Any]]) -> None:
        self.fn = fn
        self.queue: deque[tuple[int, dict[str, Any], int]] = deque()

    def submit(self, number: int, params: dict[str, Any], seed: int) -> None:
        self.queue.append((number, params, seed))

    def next(self) -> tuple[int, int, dict[str, Any] | TrialFailure]:
        number, params, seed = self.queue.popleft()
        try:
            return number, seed, self.fn(params, seed)
        except Exception as err:  # noqa: BLE001 - the search decides (a bug stops it)
            return number, seed, TrialFailure(err, traceback.format_exc(), not isinstance(err, KmatError))

    def drop(self, number: int) -> None:
        self.queue = deque(q for q in self.queue if q[0] != number)

    def close(self) -> None:
        self.queue.clear()


@dataclass
class _Flight:
    """A trial asked and not yet told: its runs' objectives as they come back."""

    trial: Any
    params: dict[str, Any]
    t0: float
    per_seed: dict[str, float] = field(default_factory=dict)


def search(study: Any, settings: TuneSettings, runner: TrialRunner, optuna: Any) -> None:
    """Ask and tell until ``settings.trials`` trials have finished: up to ``runner.slots`` trials
    asked at once, each trial's runs (one per seed) handed to ``runner``, a trial told its mean
    objective over the seeds once its last run is back (failed at its first failed run). Interrupted
    (Ctrl-C, or a bug that stops the tune), every trial still in flight is told failed and marked
    ``interrupted``: a rerun resumes without them."""
    TS = optuna.trial.TrialState
    csv_path = Path(settings.out) / "trials.csv"
    distributions = {p.name: p.distribution() for p in settings.space}
    n_done = _finished(study, optuna)
    if n_done:
        log.info(
            "resuming %s: %d of %d trials finished", csv_path.parent / "optuna.db", n_done, settings.trials
        )
    flying: dict[int, _Flight] = {}
    try:
        while n_done + len(flying) < settings.trials or flying:
            while len(flying) < runner.slots and n_done + len(flying) < settings.trials:
                trial = study.ask(distributions)
                flight = flying[trial.number] = _Flight(trial, dict(trial.params), time.perf_counter())
                for seed in settings.seeds:
                    runner.submit(trial.number, flight.params, seed)
            number, seed, outcome = runner.next()
            flight = flying[number]
            trial = flight.trial
            if isinstance(outcome, TrialFailure):
                runner.drop(number)
                del flying[number]
                trial.set_user_attr("duration_s", time.perf_counter() - flight.t0)
                trial.set_user_attr("error", f"{type(outcome.error).__name__}: {outcome.error}")
                study.tell(trial, state=TS.FAIL)
                if outcome.fatal:  # a bug: recorded, then raised
                    if outcome.error.__traceback__ is None:  # raised elsewhere: show where
                        log.error("trial #%d failed on a worker:\n%s", number, outcome.traceback)
                    raise outcome.error
                log.warning("trial #%d failed: %s", number, outcome.error)
                shown = "failed"
            else:
                flight.per_seed[str(seed)] = float(outcome["objective"])
                per_seed = {
                    str(s): flight.per_seed[str(s)] for s in settings.seeds if str(s) in flight.per_seed
                }
                trial.set_user_attr("per_seed", per_seed)
                if len(per_seed) < len(settings.seeds):
                    continue
                del flying[number]
                trial.set_user_attr("duration_s", time.perf_counter() - flight.t0)
                value = statistics.fmean(per_seed.values())
                study.tell(trial, value)
                shown = f"{value:.2f}"
            n_done += 1
            write_trials_csv(study, settings, csv_path)
            best = _best(study, optuna)
            log.info(
                "trial %d/%d (#%d) %s -> %s (best %s)",
                n_done,
                settings.trials,
                number,
                " ".join(f"{k}={_short(v)}" for k, v in flight.params.items()),
                shown,
                "none" if best is None else f"{best.value:.2f}, #{best.number}",
            )
    except BaseException:  # Ctrl-C or a bug: the trials in flight do not count; rerunning resumes
        for flight in flying.values():
            flight.trial.set_user_attr("interrupted", True)
            study.tell(flight.trial, state=TS.FAIL)
        write_trials_csv(study, settings, csv_path)
        raise
    finally:
        runner.close()


def tune(settings: TuneSettings, executor: RayExecutor | None = None) -> dict[str, Any]:
    """Run (or resume) the search, then the final runs; returns the summary (``OUT/tune.json``).

    ``executor``: where the trials' runs and the final runs are computed (default: here, one after
    another); a :class:`kmat.tools.ray_executor.RayExecutor` makes each of them a Ray task
    (:mod:`kmat.tools.ray_trials`), this process still driving the study and writing every file."""
    from kmat.run.lock import run_lock
    from kmat.utils.io import check_output_folder, output_errors

    settings.check()
    out = Path(settings.out)
    check_output_folder(out)
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)
    with run_lock(out), executor.session() if executor is not None else contextlib.nullcontext():
        return _tune(settings, out, executor)


def _trial_runner(
    settings: TuneSettings, executor: RayExecutor | None, backbone: Any, store: Any, task: Any
) -> TrialRunner:
    if executor is None:
        return LocalTrialRunner(make_trial_fn(settings, backbone, store, task))
    from kmat.tools.ray_trials import RayTrialRunner

    def config(params: dict[str, Any], seed: int) -> RunConfig:
        return trial_config(settings, params, seed)

    return RayTrialRunner(executor, config, task, SELECT_ON[settings.select_on], len(settings.seeds))


def _tune(settings: TuneSettings, out: Path, executor: RayExecutor | None = None) -> dict[str, Any]:
    from kmat.features import FeatureStore
    from kmat.run.runner import _backbone_for
    from kmat.run.trial import trial_task

    optuna = _optuna()
    study = open_study(settings, optuna)
    first = settings.run_config(settings.seeds[0], {}, out)
    backbone = _backbone_for(first, None)
    store = FeatureStore(disk=first.feature_cache)
    role = SELECT_ON[settings.select_on]
    task = trial_task(settings.task, role, first.data_root)  # high-val: no low-end manifest read
    csv_path = out / "trials.csv"
    search(study, settings, _trial_runner(settings, executor, backbone, store, task), optuna)
    write_trials_csv(study, settings, csv_path)
    best = _best(study, optuna)
    if best is None:
        raise KmatError(f"{out}: no trial finished (see the error column of {csv_path})")
    best_cfg = settings.run_config(
        settings.seeds[0], dict(best.params), out / "final" / f"seed{settings.seeds[0]}"
    )
    config_path = out / "best_config.json"
    from kmat.utils.io import atomic_write_json

    atomic_write_json(config_path, {**best_cfg.replay_dict(), "options": best_cfg.options})
    objective = f"{role}-end validation accuracy (%), mean over seed(s) {' '.join(map(str, settings.seeds))}"
    figure = plot_study(
        study,
        settings,
        out / "tune.png",
        f"kmat tune: {settings.method} on {task.name} ({settings.protocol}): {objective}",
    )
    summary: dict[str, Any] = {
        "protocol": settings.protocol,
        "select_on": settings.select_on,
        "objective": objective,
        "task": task.name,
        "method": settings.method,
        "space": [p.spec() for p in settings.space],
        "seeds": list(settings.seeds),
        "sampler": settings.sampler,
        "sampler_seed": settings.sampler_seed,
        "executor": "local" if executor is None else executor.name,
        "trials": {
            state: sum(1 for t in study.get_trials(deepcopy=False) if _state(t) == state)
            for state in ("complete", "failed", "interrupted")
        },
        "best": {
            "number": best.number,
            "params": dict(best.params),
            "objective": best.value,
            "per_seed": best.user_attrs.get("per_seed", {}),
        },
        "files": {
            "trials": str(csv_path),
            "best_config": str(config_path),
            "figure": str(figure),
            "study": str(out / "optuna.db"),
        },
    }
    if settings.final:
        summary["final"] = _final_runs(settings, out, dict(best.params), summary, backbone, store, executor)
        summary["files"]["table"] = str(_final_table(out))
    atomic_write_json(out / "tune.json", summary)
    return summary


def _final_table(out: Path) -> Path:
    """``OUT/table2.md`` and ``OUT/results.csv`` of the final runs (:func:`kmat.report.results.write_report`:
    a run not strictly zero-shot is marked); the path of the table."""
    from kmat.report.results import write_report

    write_report(out, tables=("2",), figures=False)
    return out / "table2.md"


def _best(study: Any, optuna: Any) -> Any:
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _final_runs(
    settings: TuneSettings,
    out: Path,
    params: dict[str, Any],
    summary: dict,
    backbone: Any,
    store: Any,
    executor: RayExecutor | None = None,
) -> dict[str, Any]:
    """The best configuration run for real on every seed (both test splits), in ``OUT/final/seed<S>``;
    a folder that holds that run already is kept. With ``executor`` the runs are its tasks, written
    here (:func:`kmat.run.runner.write_run`, as a grid does)."""
    from kmat.data.task import load_task, resolve_task
    from kmat.run import runner
    from kmat.run.schema import CONFIG_KEYS, differences, read_result

    annotations = {
        "protocol": settings.protocol,
        "tuning": {
            "study": str(out / "optuna.db"),
            "objective": summary["objective"],
            "best_trial": summary["best"]["number"],
            "best_objective": summary["best"]["objective"],
            "space": summary["space"],
        },
    }
    results: dict[str, dict] = {}
    todo: list[RunConfig] = []
    full_task = None
    for seed in settings.seeds:
        cfg = settings.run_config(seed, params, out / FINAL_DIR / f"seed{seed}")
        if full_task is None:  # the low-end data, read only now
            full_task = load_task(resolve_task(cfg.task, cfg.data_root))
        existing = runner.existing_identity(cfg.out)
        expected = runner.run_identity(cfg, full_task, runner.resolve_method_config(cfg, full_task), backbone)
        result_path = Path(cfg.out) / "result.json"
        if (
            existing is not None
            and not differences(existing, expected, CONFIG_KEYS)
            and not runner.stale_inputs(existing, expected)
            and read_result(result_path).get("protocol") == settings.protocol
        ):
            log.info("final run seed %d: done already (%s)", seed, result_path)
            results[str(seed)] = dict(read_result(result_path))
            continue
        log.info("final run of the best configuration, seed %d -> %s", seed, cfg.out)
        if executor is None:
            results[str(seed)] = runner.run(
                cfg, backbone=backbone, store=store, task=full_task, overwrite=True, annotations=annotations
            )
        else:
            todo.append(cfg)
    if todo:
        assert executor is not None and full_task is not None
        results.update(_final_runs_remote(todo, full_task, backbone, executor, annotations))
    results = {str(s): results[str(s)] for s in settings.seeds}
    return {
        "runs": {s: str(out / FINAL_DIR / f"seed{s}") for s in results},
        "metrics": {s: r["metrics"] for s, r in results.items()},
        "mean": _mean_metrics(list(results.values())),
    }


def _final_runs_remote(
    cfgs: list[RunConfig], task: Any, backbone: Any, executor: RayExecutor, annotations: dict[str, Any]
) -> dict[str, dict]:
    """The final runs ``cfgs`` computed by ``executor`` (what a grid hands it: identity,
    descriptions, the task checked here), each written here as it comes back; a run that fails
    raises its error."""
    from kmat.data.fingerprint import check_content_leaks
    from kmat.run import runner
    from kmat.run.executor import RunFailure, RunJob
    from kmat.run.lock import run_lock

    check_content_leaks(task)
    jobs = [
        RunJob(
            index=i,
            name=f"{FINAL_DIR}/seed{cfg.seed}",
            cfg=cfg,
            task=task,
            identity=runner.run_identity(cfg, task, runner.resolve_method_config(cfg, task), backbone),
            descriptions=runner.read_descriptions(cfg, task),
        )
        for i, cfg in enumerate(cfgs)
    ]
    results: dict[str, dict] = {}
    with contextlib.closing(executor.results(jobs)) as outcomes:
        for job, outcome in outcomes:
            if isinstance(outcome, RunFailure):
                raise outcome.error
            outcome.result.update(annotations)
            with run_lock(job.cfg.out):
                results[str(job.cfg.seed)] = runner.write_run(job.cfg, outcome, overwrite=True)
    return results
