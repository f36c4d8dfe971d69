"""Image-side baselines (issue #16): linear probe, LP++, CLIP-Adapter, Tip-Adapter, Tip-Adapter-F.

Each method's logits, loss or closed form against a hand computation on a small input, the choices
it makes on the validation split, and a ``kmat reproduce --table 2`` grid of all five on the toy task.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cli_helpers import reproduce_argv
from kmat.cli import main
from kmat.engine import train
from kmat.methods import get_method
from kmat.methods.base import MethodContext
from kmat.methods.clip_adapter import residual_features
from kmat.methods.config import resolve_config
from kmat.methods.linear_probe import fit_logistic, score, search_C
from kmat.methods.lp_pp import blended_weights, initial_alpha, lp_pp_loss, prototypes, step_sizes
from kmat.methods.tip_adapter import search_alpha_beta, search_grid, tip_logits
from kmat.run.config import RunConfig
from kmat.run.runner import views_needed

IMAGE_SIDE = ["linear_probe", "lp_pp", "clip_adapter", "tip_adapter", "tip_adapter_f"]


def make(name, backbone, task, **kw):
    cls = get_method(name)
    torch.manual_seed(0)
    return cls(MethodContext(backbone, task), resolve_config(cls.Config, kw))


def unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def shots(backbone, per_class=4, classes=3, seed=1, spread=0.6):
    """Separable few-shot features: a class centre plus noise, normalised; labels 0..C-1."""
    centres = unit(classes, backbone.output_dim, seed=seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    noise = torch.randn(len(labels), backbone.output_dim, generator=torch.Generator().manual_seed(seed + 1))
    return F.normalize(centres[labels] + spread * noise / math.sqrt(backbone.output_dim) * 8, dim=-1), labels


# ------------------------------------------------------------------------------------- Tip-Adapter


def test_tip_logits_of_a_two_class_cache_by_hand():
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    T = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    K = torch.tensor([[0.8, 0.6], [0.0, 1.0], [1.0, 0.0]])  # 3 shots
    L = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    alpha, beta, s = 2.0, 3.0, 10.0
    z = tip_logits(f, T, K, L, alpha, beta, s)
    # image 0: affinities (0.8, 0, 1): class 0 gets exp(-3*0.2) + exp(0), class 1 exp(-3)
    e = math.exp
    expected = torch.tensor(
        [
            [10 * 1.0 + 2 * (e(-0.6) + 1.0), 10 * 0.0 + 2 * e(-3.0)],
            # image 1: affinities (0.48 + 0.48 = 0.96, 0.8, 0.6)
            [10 * 0.6 + 2 * (e(-3 * 0.04) + e(-3 * 0.4)), 10 * 0.8 + 2 * e(-3 * 0.2)],
        ]
    )
    assert torch.allclose(z, expected, atol=1e-5)


def test_tip_search_is_the_first_best_of_the_grid_beta_outer_alpha_inner():
    g = torch.Generator().manual_seed(5)
    feats, keys, text = (F.normalize(torch.randn(n, 8, generator=g), dim=-1) for n in (12, 6, 3))
    labels = torch.randint(0, 3, (12,), generator=g)
    values = F.one_hot(torch.arange(6) % 3, 3).float()
    grid = search_grid(5.0, 7)
    assert grid[0] == pytest.approx(0.1) and grid[1] == pytest.approx(0.1 + 4.9 / 7) and len(grid) == 7
    best = (-1.0, None, None)
    for beta in grid:  # the reference loop, by hand
        for alpha in grid:
            z = tip_logits(feats, text, keys, values, alpha, beta, 3.0)
            acc = float((z.argmax(1) == labels).float().mean() * 100)
            if acc > best[0]:
                best = (acc, alpha, beta)
    alpha, beta, acc = search_alpha_beta(feats, labels, text, keys, values, 3.0, 5.0, 7)
    assert (acc, alpha, beta) == pytest.approx(best)


def test_tip_adapter_fit_caches_the_shots_and_records_the_searched_values(backbone, loaded_toy_task):
    m = make("tip_adapter", backbone, loaded_toy_task, search_step=10)
    feats, labels = shots(backbone)
    val = shots(backbone, per_class=2, seed=9)
    info = m.fit(lambda e: (feats, labels), val)
    assert torch.allclose(m.cache_keys, feats, atol=1e-6)
    assert torch.equal(m.cache_values, F.one_hot(labels, 3).float())
    a, b, acc = search_alpha_beta(val[0], val[1], m.text, feats, m.cache_values, m.logit_scale, 50.0, 10)
    assert info["searched"] and (info["alpha"], info["beta"], info["val_acc"]) == pytest.approx((a, b, acc))
    assert float(m.alpha) == pytest.approx(a) and float(m.beta) == pytest.approx(b)
    assert info["cache_size"] == 12
    z = m.predict_logits(feats[:2], "low")
    ref = (
        m.logit_scale * feats[:2] @ m.text.T + a * torch.exp(-b * (1 - feats[:2] @ feats.T)) @ m.cache_values
    )
    assert torch.allclose(z, ref, atol=1e-4)
    # without a validation split: the published initial values
    m2 = make("tip_adapter", backbone, loaded_toy_task)
    assert m2.fit(lambda e: (feats, labels), None) == {
        "cache_size": 12,
        "cache_views": 1,
        "alpha": 1.0,
        "beta": 1.0,
        "searched": False,
    }


def test_tip_adapter_cache_averages_its_views(backbone, loaded_toy_task):
    m = make("tip_adapter", backbone, loaded_toy_task, cache_views=2, search=False)
    v0, labels = shots(backbone, seed=1)
    v1, _ = shots(backbone, seed=3)
    m.fit(lambda e: ((v0, v1)[e], labels), None)
    assert torch.allclose(m.cache_keys, F.normalize((v0 + v1) / 2, dim=-1), atol=1e-6)


def test_tip_adapter_f_fine_tunes_the_keys_with_adamw_then_searches_on_val(backbone, loaded_toy_task):
    m = make("tip_adapter_f", backbone, loaded_toy_task, epochs=3, batch_size=4, search_step=5)
    feats, labels = shots(backbone)
    m.fit(lambda e: (feats, labels), None)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["cache_keys"]
    assert m.cache_keys.shape == (12, backbone.output_dim)
    opt = m.optimizer([m.cache_keys], m.cfg)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-4
    terms = m.loss(feats[:4], labels[:4])  # the loss is CE of the Tip-Adapter logits
    ref = F.cross_entropy(
        tip_logits(feats[:4], m.text, m.cache_keys, m.cache_values, 1.0, 1.0, m.logit_scale), labels[:4]
    )
    assert float(terms["total"].detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    history = train(m, lambda e: (feats, labels), m.cfg, seed=1, show_progress=False)
    assert len(history) == 3 and not torch.allclose(m.cache_keys.detach(), feats)
    val = shots(backbone, per_class=2, seed=9)
    info = m.after_training(val)
    a, b, acc = search_alpha_beta(
        val[0], val[1], m.text, m.cache_keys.detach(), m.cache_values, m.logit_scale, 50.0, 5
    )
    assert info["searched"] and (info["alpha"], info["beta"]) == pytest.approx((a, b))


def test_a_saved_cache_of_another_size_is_restored(backbone, loaded_toy_task):
    m = make("tip_adapter_f", backbone, loaded_toy_task)
    feats, labels = shots(backbone)
    m.fit(lambda e: (feats, labels), None)
    fresh = make("tip_adapter_f", backbone, loaded_toy_task)
    assert fresh.cache_keys.shape[0] == 3  # before fit: the zero-shot embeddings
    fresh.load_head({k: v.clone() for k, v in m.head().items()})
    assert torch.equal(fresh.cache_keys.detach(), m.cache_keys.detach()) and fresh.cache_keys.requires_grad
    assert torch.allclose(fresh.predict_logits(feats, "low"), m.predict_logits(feats, "low"))


# ------------------------------------------------------------------------------------ CLIP-Adapter


def test_clip_adapter_residual_and_logits_by_hand(backbone, loaded_toy_task):
    m = make("clip_adapter", backbone, loaded_toy_task, alpha=0.3)
    d = backbone.output_dim
    assert m.adapter[0].weight.shape == (d // 4, d) and m.adapter[0].bias is None
    f = unit(5, d, seed=4)
    W1, W2 = m.adapter[0].weight.detach(), m.adapter[2].weight.detach()
    a = torch.relu(torch.relu(f @ W1.T) @ W2.T)
    f_adapted = F.normalize(0.3 * a + 0.7 * f, dim=-1)
    with torch.no_grad():
        assert torch.allclose(m.adapted(f), f_adapted, atol=1e-6)
        assert torch.allclose(m.logits(f, "low"), m.logit_scale * f_adapted @ m.text.T, atol=1e-4)
        assert torch.allclose(
            residual_features(m.adapter, f, 0.3, normalize=False), 0.3 * a + 0.7 * f, atol=1e-6
        )
        assert torch.allclose(residual_features(m.adapter, f, 0.0), f, atol=1e-6)  # alpha 0: zero-shot
    assert torch.allclose(m.text, m.ctx.zeroshot_embeddings())
    labels = torch.tensor([0, 1, 2, 0, 1])
    assert float(m.loss(f, labels)["total"].detach()) == pytest.approx(
        float(F.cross_entropy(m.logit_scale * f_adapted @ m.text.T, labels)), rel=1e-5
    )


def test_clip_adapter_published_recipe():
    cfg = get_method("clip_adapter").Config()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.momentum, cfg.weight_decay) == (20, 32, 0.01, 0.0, 0.0)
    assert (cfg.warmup_epochs, cfg.warmup_lr, cfg.alpha, cfg.reduction) == (1, 1e-5, 0.5, 4)


# ----------------------------------------------------------------------------------- linear probe


def test_linear_probe_chooses_the_val_best_C_of_the_grid(backbone, loaded_toy_task):
    feats, labels = shots(backbone, spread=3.0)
    val = shots(backbone, per_class=3, seed=11, spread=3.0)
    grid = [-4, -2, 0, 2]
    C, tried = search_C((feats, labels), val, 3, grid, refine_steps=0, max_iter=500)
    by_hand = []
    for e in grid:
        W, b = fit_logistic(feats, labels, 10.0**e, 3, 500)
        acc, ce = score(W, b, *val)
        by_hand.append((-acc, ce, e))
    assert math.log10(C) == pytest.approx(min(by_hand)[2])
    assert [t["C"] for t in tried] == pytest.approx([10.0**e for e in grid])

    m = make("linear_probe", backbone, loaded_toy_task, c_min_exponent=-4, c_max_exponent=2, refine_steps=0)
    info = m.fit(lambda e: (feats, labels), val)
    assert info["C"] == pytest.approx(C)
    W, b = fit_logistic(feats, labels, C, 3, 1000)  # refit on the shots with the chosen C
    assert torch.allclose(m.weight, W, atol=1e-4) and torch.allclose(m.bias, b, atol=1e-4)
    assert torch.allclose(m.predict_logits(val[0], "low"), val[0] @ W.T + b, atol=1e-4)
    emb = m.class_embeddings()
    assert torch.allclose(emb["high"], F.normalize(W, dim=-1), atol=1e-5) and torch.equal(
        emb["high"], emb["low"]
    )


def test_linear_probe_refinement_keeps_the_best_C_tried(backbone):
    feats, labels = shots(backbone, spread=3.0)
    val = shots(backbone, per_class=3, seed=11, spread=3.0)
    C, tried = search_C((feats, labels), val, 3, [-6, -4, -2, 0, 2, 4, 6], refine_steps=3, max_iter=300)
    assert len(tried) > 7
    best = max(tried, key=lambda t: (t["val_acc"], -t["val_ce"], -t["C"]))
    assert C == pytest.approx(best["C"])


def test_logistic_regression_matches_sklearn_probabilities_binary_and_multiclass(backbone):
    from sklearn.linear_model import LogisticRegression

    for classes in (2, 3):
        feats, labels = shots(backbone, classes=classes, spread=3.0)
        W, b = fit_logistic(feats, labels, 1.0, classes, 1000)
        clf = LogisticRegression(C=1.0, max_iter=1000).fit(feats.double().numpy(), labels.numpy())
        p = torch.softmax(feats @ W.T + b, dim=1)
        assert torch.allclose(
            p, torch.from_numpy(clf.predict_proba(feats.double().numpy())).float(), atol=1e-4
        )
        if classes == 2:
            assert torch.allclose(W[0], -W[1]) and torch.allclose(b[0], -b[1])


# ------------------------------------------------------------------------------------------- LP++


def test_lp_pp_blended_weights_loss_and_step_sizes_by_hand(backbone, loaded_toy_task):
    W_v = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    T = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    alpha = torch.tensor([2.0, -0.5])
    W = blended_weights(W_v, alpha, T)
    assert torch.allclose(W, torch.tensor([[2.2, 3.6], [-0.5, -1.0]]))
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    y = torch.tensor([0, 1, 0])
    z = f @ W.T
    assert float(lp_pp_loss(f, y, W_v, alpha, T)) == pytest.approx(
        float(-(z.log_softmax(1)[[0, 1, 2], y]).mean())
    )
    lr_w, lr_a = step_sizes(f, T)
    lam = float(torch.linalg.eigvalsh(f.T @ f).max())
    sims = f @ T.T
    assert lr_w == pytest.approx(4 * 3 / lam) and lr_a == pytest.approx(
        3 / (4 * float((sims**2).sum(0).max()))
    )
    # alpha_0 = 250 * mean_c mean_{i in c} f_i . t_c: class 0 has images 0, 2; class 1 image 1
    a0 = 250 * ((float(sims[0, 0]) + float(sims[2, 0])) / 2 + float(sims[1, 1])) / 2
    assert initial_alpha(f, y, T, 250.0) == pytest.approx(a0)
    assert torch.allclose(prototypes(f, y, 2, "sum"), torch.tensor([[1.6, 0.8], [0.0, 1.0]]))
    assert torch.allclose(prototypes(f, y, 2, "mean"), torch.tensor([[0.8, 0.4], [0.0, 1.0]]))


def test_lp_pp_fit_lowers_the_loss_and_keeps_the_val_best_iteration(backbone, loaded_toy_task):
    feats, labels = shots(backbone, spread=3.0)
    val = shots(backbone, per_class=3, seed=11, spread=3.0)
    m = make("lp_pp", backbone, loaded_toy_task, epochs=30)
    T = m.text.clone()
    start = float(
        lp_pp_loss(
            feats,
            labels,
            prototypes(feats, labels, 3, "sum"),
            torch.full((3,), initial_alpha(feats, labels, T, 250.0)),
            T,
        )
    )
    info = m.fit(lambda e: (feats, labels), val)
    assert info["final_loss"] < start
    assert 0 <= info["kept_iteration"] < 30
    z = m.predict_logits(val[0], "high")
    assert info["val_acc"] == pytest.approx(float((z.argmax(1) == val[1]).float().mean() * 100))
    assert torch.allclose(z, val[0] @ (m.visual + m.alpha[:, None] * T).T, atol=1e-4)
    assert torch.equal(m.text, T)  # the text side stays frozen
    last = make("lp_pp", backbone, loaded_toy_task, epochs=30, select_on_val=False)
    assert "kept_iteration" not in last.fit(lambda e: (feats, labels), val)


# ---------------------------------------------------------------------------- runs and the grid


def test_training_views_a_grid_precomputes(loaded_toy_task, toy_task_master, tmp_path):
    def cfg(method, augment=False, **options):
        return RunConfig(
            task=str(toy_task_master), out=str(tmp_path), method=method, augment=augment, options=options
        )

    assert views_needed(cfg("zeroshot"), loaded_toy_task) == 0
    for m in ("linear_probe", "lp_pp", "tip_adapter"):  # not trained, but fitted on view 0
        assert views_needed(cfg(m), loaded_toy_task) == 1
    assert views_needed(cfg("tip_adapter", augment=True, cache_views=3), loaded_toy_task) == 3
    assert views_needed(cfg("tip_adapter_f", augment=True), loaded_toy_task) == 20
    assert views_needed(cfg("clip_adapter"), loaded_toy_task) == 1


def test_the_five_methods_run_through_kmat_reproduce_table_2(
    tiny_model_dir, toy_task_master, tmp_path, capsys
):
    out = tmp_path / "rep"
    code = main(reproduce_argv(tiny_model_dir, toy_task_master, out, methods=IMAGE_SIDE, epochs=2))
    assert code == 0, capsys.readouterr().err
    header = next(
        line for line in (out / "table2.md").read_text().splitlines() if line.startswith("| Dataset")
    )
    results = {}
    from kmat.run.experiments import METHOD_DISPLAY

    for m in IMAGE_SIDE:
        assert f"| {METHOD_DISPLAY[m]} |" in header, (m, header)
        (path,) = (out / "runs" / "toy" / m).glob("*/seed1/result.json")
        results[m] = json.loads(path.read_text())
        assert set(results[m]["metrics"]) == {"high", "low", "h"}
        assert (path.parent / "head.safetensors").is_file()
    assert results["linear_probe"]["fit"]["C"] > 0
    assert {"alpha", "beta", "cache_size"} <= set(results["tip_adapter"]["fit"])
    assert {"alpha", "beta", "cache_size"} <= set(results["tip_adapter_f"]["fit"])
    assert "lr_W" in results["lp_pp"]["fit"]
    assert len(results["clip_adapter"]["history"]) == 2 and len(results["tip_adapter_f"]["history"]) == 2


PUBLISHED = {  # (epochs, batch_size, lr, momentum, weight_decay, warmup_epochs): docs/methods.md, with sources
    "linear_probe": (0, 1, 0.0, 0.9, 5e-4, 1),  # not trained by the loop
    "lp_pp": (300, 1, 0.0, 0.9, 0.0, 0),  # 300 full-batch iterations, data-driven steps
    "clip_adapter": (20, 32, 0.01, 0.0, 0.0, 1),
    "tip_adapter": (0, 1, 0.0, 0.9, 5e-4, 1),  # training-free
    "tip_adapter_f": (20, 32, 0.001, 0.9, 0.01, 0),  # AdamW: momentum unused
}


@pytest.mark.parametrize("name", IMAGE_SIDE)
def test_published_recipes_are_pinned(name):
    """A silent change of a published value fails here (change it with its source)."""
    cfg = get_method(name).Config()
    assert (
        cfg.epochs,
        cfg.batch_size,
        cfg.lr,
        cfg.momentum,
        cfg.weight_decay,
        cfg.warmup_epochs,
    ) == PUBLISHED[name]
    if name == "linear_probe":
        assert (cfg.c_min_exponent, cfg.c_max_exponent, cfg.c_exponent_step, cfg.refine_steps) == (
            -6,
            6,
            2,
            8,
        )
    if name == "lp_pp":
        assert (cfg.alpha_every, cfg.alpha_init_scale, cfg.init_prototypes) == (10, 250.0, "sum")
    if name.startswith("tip_adapter"):
        assert (cfg.init_alpha, cfg.init_beta, cfg.search, cfg.search_scale, cfg.search_step) == (
            1.0,
            1.0,
            True,
            50.0,
            200,
        )
        assert cfg.cache_views == 1
    if name == "tip_adapter_f":
        assert cfg.adam_eps == 1e-4


def test_tip_adapter_f_options_say_adamw_not_sgd():
    """A subclass re-declaring a field with option(...) replaces its help (the lr is AdamW's here);
    one re-declaring it with a plain value keeps the base's help."""
    from kmat.methods.config import options_of
    from kmat.methods.tip_adapter_f import TipAdapterFConfig

    opts = options_of(TipAdapterFConfig)
    assert "AdamW" in opts["lr"].help and "SGD" not in opts["lr"].help
    assert "momentum" not in opts  # AdamW has none: not an option (see the next test)
    assert opts["epochs"].help == "training epochs (0: evaluate the initial prompts)"  # plain re-declaration


@pytest.mark.parametrize(
    ("method", "name", "value"),
    [
        ("linear_probe", "lr", 0.1),
        ("linear_probe", "epochs", 5),
        ("tip_adapter", "batch_size", 8),
        ("lp_pp", "lr", 0.5),
        ("tip_adapter_f", "momentum", 0.5),
    ],
)
def test_recipe_options_a_method_does_not_use_are_refused_with_the_reason(method, name, value):
    """Setting a loop option a method ignores is an error saying why, not a silent no-op; the
    option is not listed, a grid does not hand it to the method, and a recorded config (the
    defaults) still loads."""
    from kmat.errors import ConfigError
    from kmat.methods import get_method
    from kmat.methods.config import options_of, resolve_config
    from kmat.run.experiments import method_options

    cls = get_method(method).Config
    assert name not in options_of(cls)
    with pytest.raises(ConfigError, match=f"option {name} is not used by this method \\(.+\\)"):
        resolve_config(cls, {name: value})
    assert name not in method_options(method, {name: value})
    recorded = cls().to_dict()  # what result.json holds: the unused fields at their defaults
    assert resolve_config(cls, recorded).to_dict() == recorded
