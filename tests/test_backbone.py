import shutil
import time

import pytest
import torch

from kmat.backbone import BackboneError, load_backbone
from kmat.prompts import FactorisedPrompt, SharedContextPrompt, init_context_from_words

CLASSNAMES = ["melanoma", "basal cell carcinoma", "nevus"]


def test_local_dir_loads_frozen_in_eval(backbone):
    assert all(not p.requires_grad for p in backbone.model.parameters())
    backbone.model.train()
    assert not any(m.training for m in backbone.model.modules())
    assert backbone.context_length == 64
    assert backbone.logit_scale > 1


def test_moved_model_folder_still_loads(tiny_model_dir, tmp_path, backbone):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_model_dir, moved)
    other = load_backbone(f"local-dir:{moved}")
    ids = other.tokenize(["a photo of a nevus."])
    assert torch.equal(other.encode_text(ids), backbone.encode_text(ids))


def test_cutting_padding_changes_nothing(backbone):
    ids = backbone.tokenize([f"a photo of a {c}." for c in CLASSNAMES])
    assert ids.shape[1] == backbone.context_length
    cut = backbone.cut_padding(ids)
    assert cut.shape[1] < ids.shape[1]
    with torch.no_grad():
        full = backbone.model.encode_text(ids)
        short = backbone.encode_text(ids, normalize=False)
    assert (full - short).abs().max() < 1e-5


def test_injection_parity_shared_context(backbone):
    """Context = word embeddings of "a photo of a" reproduces encode_text("a photo of a {c}.")."""
    prompt = SharedContextPrompt(backbone, CLASSNAMES, n_ctx=4, init_words="a photo of a")
    with torch.no_grad():
        injected = prompt()
        ref = torch.nn.functional.normalize(
            backbone.model.encode_text(backbone.tokenize([f"a photo of a {c}." for c in CLASSNAMES])), dim=-1
        )
    assert (injected - ref).abs().max() < 1e-5


def test_injection_parity_factorised_prompt(backbone):
    """Shared, MSC and CSC context set to real words reproduce the full sentence per class and modality."""
    mods = ["dermoscopy", "clinical photograph"]
    fp = FactorisedPrompt(backbone, CLASSNAMES, mods, n_ctx=4, csc=True, msc=True)
    shared = "a photo of a"
    mod_words = {0: "sharp high contrast image", 1: "low blur speckle picture"}
    cls_words = ["dark irregular pigment network", "shiny pearly raised papule", "small round brown macule"]
    with torch.no_grad():
        fp.shared.copy_(init_context_from_words(backbone, shared))
        for m in range(2):
            fp.modality_ctx[m].copy_(init_context_from_words(backbone, mod_words[m]))
            for i in range(3):
                fp.class_ctx[m, i].copy_(init_context_from_words(backbone, cls_words[i]))
        t = fp()
        texts = [
            f"{shared} {mod_words[m]} {cls_words[i]} {c} {mods[m]}."
            for m in range(2)
            for i, c in enumerate(CLASSNAMES)
        ]
        ref = torch.nn.functional.normalize(backbone.model.encode_text(backbone.tokenize(texts)), dim=-1)
    assert (t.reshape(6, -1) - ref).abs().max() < 1e-5


@pytest.mark.parametrize("csc,msc", [(False, False), (True, False), (False, True), (True, True)])
def test_factorised_prompt_parameters(backbone, csc, msc):
    fp = FactorisedPrompt(backbone, CLASSNAMES, ["a", "b"], n_ctx=4, csc=csc, msc=msc)
    names = {n: tuple(p.shape) for n, p in fp.named_parameters()}
    w = backbone.embed_width
    expected = {"shared": (4, w)}
    if msc:
        expected["modality_ctx"] = (2, 4, w)
    if csc:
        expected["class_ctx"] = (2, 3, 4, w) if msc else (3, 4, w)
    assert names == expected
    assert fp().shape == (2, 3, backbone.output_dim)


def test_hub_unreachable_fails_fast_with_help(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(BackboneError) as err:
        load_backbone("biomedclip")
    assert time.perf_counter() - t0 < 30
    assert "local-dir:" in str(err.value)


def test_bad_specs(tmp_path):
    with pytest.raises(BackboneError, match="unknown backbone spec"):
        load_backbone("not-a-model")
    with pytest.raises(BackboneError, match="open_clip_config.json"):
        load_backbone(f"local-dir:{tmp_path}")


def test_unreachable_hub_endpoint_fails_fast_without_offline_flag(monkeypatch):
    """No HF_HUB_OFFLINE: the reachability probe (loopback port that refuses) switches to the cache."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_HOME", "/nonexistent-kmat-test-cache")
    t0 = time.perf_counter()
    with pytest.raises(BackboneError, match="local-dir:"):
        load_backbone("hf-hub:example-org/not-cached-model")
    assert time.perf_counter() - t0 < 30
