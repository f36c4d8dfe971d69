"""open_clip's own text transformer (OpenAI CLIP and its fine-tunes) as a kmat backbone.

A tiny random-weight ``open_clip.model.CLIP`` is written to a folder and loaded through the same
``local-dir:`` path real users use; prompt injection must reproduce open_clip's ``encode_text``, and
every method must train and evaluate on it.
"""

from __future__ import annotations

import json
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from cli_helpers import toy_run_config
from kmat.backbone import Backbone, BackboneError, load_backbone
from kmat.cli import main
from kmat.engine import load_checkpoint
from kmat.methods import available_methods, get_method
from kmat.prompts import FactorisedPrompt, SharedContextPrompt, init_context_from_words
from kmat.run.layout import RunLayout
from kmat.run.runner import build_method, run
from kmat.tools.tinymodel import write_tiny_biomedclip

CLASSNAMES = ["melanoma", "basal cell carcinoma", "nevus"]
SOT, EOT = 49406, 49407  # CLIP's <start_of_text> and <end_of_text>


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory):
    return write_tiny_biomedclip(tmp_path_factory.mktemp("native_clip"), size="tiny", seed=0, text="native")


@pytest.fixture(scope="module")
def native(native_dir) -> Backbone:
    return load_backbone(f"local-dir:{native_dir}")


def _ref(bb: Backbone, texts: list[str]) -> torch.Tensor:
    """open_clip's own ``encode_text`` on the full-length token ids (no kmat code on the path)."""
    with torch.no_grad():
        return bb.model.encode_text(bb.tokenize(texts))


# --------------------------------------------------------------------------------------------
# loading and tokenizer


def test_native_folder_loads_through_local_dir_as_clip(native, native_dir):
    assert set(p.name for p in native_dir.iterdir()) == {
        "open_clip_config.json",
        "open_clip_model.safetensors",
    }
    assert type(native.model) is open_clip.model.CLIP
    assert isinstance(native.tokenizer, open_clip.tokenizer.SimpleTokenizer)
    assert native.text_kind == "native"
    assert (native.context_length, native.pad_id, native.start_id, native.end_id) == (77, 0, SOT, EOT)
    assert native.embed_width == 32 and native.output_dim == 24
    assert all(not p.requires_grad for p in native.model.parameters())
    native.model.train()
    assert not any(m.training for m in native.model.modules())


def test_hf_tower_is_still_found_for_biomedclip_shaped_models(backbone):
    assert backbone.text_kind == "hf"
    assert (
        backbone.start_id == backbone._hf_tok.cls_token_id
        and backbone.end_id == backbone._hf_tok.sep_token_id
    )


def test_a_model_with_no_known_text_tower_is_refused(native):
    with pytest.raises(BackboneError, match="OpenAI CLIP"):
        Backbone(model=torch.nn.Linear(2, 2), tokenizer=native.tokenizer, name="x", image_size=32,
                 mean=(0, 0, 0), std=(1, 1, 1))  # fmt: skip


def test_prompt_positions_for_clip_tokenizer(native):
    """``<sot> a photo of a nevus . <eot> 0 ..``: the words' ids concatenate, so the context goes right
    after ``<sot>`` and the class tokens and ``<eot>`` follow it, with ``<eot>`` the largest id."""
    ids = native.tokenize(["a photo of a basal cell carcinoma."])[0]
    words, cls = native.token_ids("a photo of a"), native.token_ids("basal cell carcinoma.")
    n = 1 + len(words) + len(cls) + 1
    assert ids[:n].tolist() == [SOT, *words, *cls, EOT]
    assert ids[n:].eq(native.pad_id).all() and int(ids.argmax()) == n - 1
    assert len(words) == 4  # one BPE token per word: n_ctx=4 replaces them one for one

    prompt = SharedContextPrompt(native, ["basal cell carcinoma"], n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        embeds, mask = prompt.suffixes(prompt.ctx.unsqueeze(0))
        expected = native.embed_tokens(ids[:n].unsqueeze(0))
    assert embeds.shape[1] == n and mask.tolist() == [[1] * n]
    assert torch.equal(embeds, expected)  # the assembled prompt is the sentence's own embedding


# --------------------------------------------------------------------------------------------
# parity with open_clip's encode_text


def test_encode_text_equals_open_clip_encode_text(native):
    texts = [
        "a photo of a nevus.",
        "wow!! a shiny, pearly papule?",  # id 0 ('!') inside a real sentence is not padding
        "x",
        " ".join(["melanoma"] * 100),  # truncated by the tokenizer: <eot> in the last column
    ]
    ids = native.tokenize(texts)
    assert (ids == 0).any(dim=1)[1] and ids[3, -1] == EOT
    ref = _ref(native, texts)
    with torch.no_grad():
        got = native.encode_text(ids, normalize=False)
    assert got.shape == ref.shape == (4, native.output_dim)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(native.encode_texts(texts), F.normalize(ref, dim=-1), rtol=1e-5, atol=1e-5)


def test_injection_parity_shared_context(native):
    """CoOp from "a photo of a" gives exactly encode_text("a photo of a {c}.") (float32 rounding)."""
    prompt = SharedContextPrompt(native, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    ref = _ref(native, [f"a photo of a {c}." for c in CLASSNAMES])
    with torch.no_grad():
        raw = native.encode_prompts(
            *prompt.suffixes(prompt.ctx.unsqueeze(0).expand(3, -1, -1)), normalize=False
        )
        t = prompt()
    torch.testing.assert_close(raw, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t, F.normalize(ref, dim=-1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(t[0], t[1], atol=1e-3)  # the class tokens matter


def test_injection_parity_per_image_context(native):
    """CoCoOp's per-image prompts with a zero shift are CoOp's prompts for every image."""
    prompt = SharedContextPrompt(native, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        per_image = prompt(torch.zeros(2, native.embed_width))
        shifted = prompt(torch.randn(2, native.embed_width, generator=torch.Generator().manual_seed(0)))
    ref = F.normalize(_ref(native, [f"a photo of a {c}." for c in CLASSNAMES]), dim=-1)
    torch.testing.assert_close(per_image, ref.expand(2, -1, -1), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(shifted, per_image, atol=1e-3)


def test_injection_parity_factorised_prompt(native):
    """K-MaT's shared, MSC and CSC context set to real words reproduce the whole sentences."""
    mods = ["dermoscopy", "clinical photograph"]
    fp = FactorisedPrompt(native, CLASSNAMES, mods, n_ctx=4, csc=True, msc=True)
    shared = "a photo of a"
    mod_words = ["sharp high contrast image", "low blurry noisy picture"]
    cls_words = ["dark irregular pigment network", "shiny smooth pink skin", "small round brown spot"]
    for words in [shared, *mod_words, *cls_words]:
        assert len(native.token_ids(words)) == 4, words
    with torch.no_grad():
        fp.shared.copy_(init_context_from_words(native, shared))
        for m in range(2):
            fp.modality_ctx[m].copy_(init_context_from_words(native, mod_words[m]))
            for i in range(3):
                fp.class_ctx[m, i].copy_(init_context_from_words(native, cls_words[i]))
        t = fp()
    texts = [
        f"{shared} {mod_words[m]} {cls_words[i]} {c} {mods[m]}."
        for m in range(2)
        for i, c in enumerate(CLASSNAMES)
    ]
    torch.testing.assert_close(
        t.reshape(6, -1), F.normalize(_ref(native, texts), dim=-1), rtol=1e-5, atol=1e-5
    )


def test_padding_after_the_end_token_changes_nothing_and_pooling_is_at_the_end_token(native):
    prompt = SharedContextPrompt(native, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        embeds, mask = prompt.suffixes(prompt.ctx.unsqueeze(0).expand(3, -1, -1))
        base = native.encode_prompts(embeds, mask)
        junk = torch.randn(3, 5, native.embed_width, generator=torch.Generator().manual_seed(1))
        padded = native.encode_prompts(torch.cat([embeds, junk], 1), torch.cat([mask, torch.zeros(3, 5)], 1))
        torch.testing.assert_close(padded, base, rtol=1e-5, atol=1e-5)
        moved = mask.clone()
        moved[0, int(mask[0].sum()) - 1] = 0  # pool one token earlier: a different feature
        assert not torch.allclose(native.encode_prompts(embeds, moved)[0], base[0], atol=1e-3)


def test_bf16_autocast_runs_the_native_tower_close_to_fp32(native):
    prompt = SharedContextPrompt(native, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        fp32 = prompt()
        native.set_precision("bf16")
        try:
            bf16 = prompt()
            texts = native.encode_texts([f"a photo of a {c}." for c in CLASSNAMES])
        finally:
            native.set_precision("fp32")
    assert bf16.dtype == texts.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0.05)
    torch.testing.assert_close(texts, fp32, rtol=0, atol=0.05)


def test_gradients_reach_the_context_only(native):
    prompt = SharedContextPrompt(native, CLASSNAMES, n_ctx=4, init_words=None)
    prompt().sum().backward()
    assert prompt.ctx.grad is not None and prompt.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in native.model.parameters())


def test_too_long_prompts_are_refused(native):
    with pytest.raises(ValueError, match="context length 77"):
        SharedContextPrompt(native, [" ".join(["nevus"] * 80)], n_ctx=4, init_words=None)()


def test_text_dropout_switches_the_native_text_modules(native):
    with native.text_dropout(True):
        assert native.model.transformer.training and native.model.token_embedding.training
        assert not native.model.visual.training
    assert not any(m.training for m in native.model.modules())


@pytest.mark.parametrize(
    "cfg,match", [({"pool_type": "last"}, "pooling 'last'"), ({"no_causal_mask": True}, "causal")]
)
def test_native_variants_kmat_cannot_inject_into_are_refused(tmp_path, native_dir, cfg, match):
    folder = tmp_path / "variant"
    folder.mkdir()
    config = json.loads((native_dir / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"].update(cfg)
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    (folder / "open_clip_model.safetensors").write_bytes(
        (native_dir / "open_clip_model.safetensors").read_bytes()
    )
    with pytest.raises(BackboneError, match=match):
        load_backbone(f"local-dir:{folder}")


# --------------------------------------------------------------------------------------------
# every method on the native backbone


@pytest.mark.parametrize("method", available_methods())
def test_every_method_trains_one_epoch_and_evaluates(
    method, native, native_dir, toy_task_master, loaded_toy_task, tmp_path
):
    cfg = toy_run_config(toy_task_master, tmp_path / "r", native_dir, method=method)
    result = run(cfg, backbone=native)
    assert result["backbone"] == f"local-dir:{native_dir}"
    for role in ("high", "low", "h"):
        for metric in ("acc", "macro_f1"):
            value = result["metrics"][role][metric]
            assert math.isfinite(value) and 0 <= value <= 100, (method, role, metric, value)
    layout = RunLayout.of(cfg.out)
    saved = load_file(str(layout.embeddings))
    for role in ("high", "low"):
        assert saved[role].shape == (3, native.output_dim)
        torch.testing.assert_close(saved[role].norm(dim=-1), torch.ones(3))
    if get_method(method).trains:
        assert len(result["history"]) == 1 and math.isfinite(result["history"][0]["total"])
        state, _ = load_checkpoint(layout.checkpoint)
        fresh = build_method(cfg, loaded_toy_task, native).learnable_state()
        assert set(state) == set(fresh)
        assert any(not torch.equal(fresh[k], v) for k, v in state.items()), (
            f"{method}: training changed nothing"
        )


def test_kmat_train_cli_with_a_native_local_dir_backbone(toy_task_master, tmp_path, capsys):
    model = tmp_path / "clip"
    assert main(["backbone", "--size", "tiny", "--text", "native", "--out", str(model)]) == 0
    assert f"local-dir:{model}" in capsys.readouterr().out
    assert load_backbone(f"local-dir:{model}").text_kind == "native"
    out = tmp_path / "run"
    args = ["train", "--task", str(toy_task_master), "--method", "coop", "--backbone", f"local-dir:{model}"]
    code = main([*args, "--epochs", "1", "--shots", "2", "--out", str(out), "--quiet", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["backbone"] == f"local-dir:{model}" and result["method"] == "coop"
    assert 0 <= result["metrics"]["h"]["acc"] <= 100
    state, _ = load_checkpoint(out / "checkpoint.safetensors")
    assert [tuple(v.shape) for v in state.values()] == [
        (4, 32)
    ]  # CoOp's context lives in CLIP's 32-wide token space
