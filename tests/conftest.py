"""Shared fixtures: a tiny random-weight BiomedCLIP-shaped model and the toy task, built once."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("KMAT_PROGRESS", "0")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Caches go to a temporary folder, never to the user's ~/.cache/kmat."""
    os.environ["KMAT_CACHE"] = str(tmp_path_factory.mktemp("kmat_cache"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from kmat.tools.tinymodel import write_tiny_biomedclip

    return write_tiny_biomedclip(tmp_path_factory.mktemp("tiny_model"), size="tiny", seed=0)


@pytest.fixture(scope="session")
def backbone(tiny_model_dir):
    from kmat.backbone import load_backbone

    return load_backbone(f"local-dir:{tiny_model_dir}")


@pytest.fixture(scope="session")
def toy_task_master(tmp_path_factory) -> Path:
    from kmat.tools.toy import write_toy_task

    return write_toy_task(tmp_path_factory.mktemp("toy_master"), n_train=6, n_val=2, n_test=3, size=40)


@pytest.fixture()
def toy_task(toy_task_master, tmp_path) -> Path:
    """A private copy of the toy task (tests may break it)."""
    dst = tmp_path / "toy"
    shutil.copytree(toy_task_master, dst)
    return dst


@pytest.fixture(scope="session")
def loaded_toy_task(toy_task_master):
    from kmat.data.task import load_task

    return load_task(toy_task_master)


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance per test module that asks for it (2 CPUs: two runs at a time), shut
    down after the module."""
    import ray

    # this machine holds the test data: it offers the data resource (--data-resource kmat_data)
    ray.init(num_cpus=2, resources={"kmat_data": 1}, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
