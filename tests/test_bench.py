"""The benchmark's code path runs (on the tiny model) and ends with the documented line; no timing asserts."""

import re

from kmat.tools.bench import run_bench


def test_bench_runs_and_prints_the_speedup_line():
    lines = []
    result = run_bench(arch="tiny", device="cpu", repeats=1, memory=False, log=lines.append)
    assert re.fullmatch(r"speedup step=[0-9.]+ run=[0-9.]+ floor=[0-9.]+", lines[-1])
    assert result["steps"] == 1200 and result["views"] == 4800
    assert result["prompt_tokens_cut"] < result["prompt_tokens_reference"]
    assert any(line.startswith("cold-run ceiling") for line in lines)
    assert result["speedup_run"] <= result["speedup_run_ceiling"]


def test_encode_batch_follows_the_device():
    """Small no-grad batches on a CPU (larger ones measured slower per image there), large on a GPU."""
    import torch

    from kmat.run.config import RunConfig
    from kmat.run.device import encode_batch_size

    assert encode_batch_size(torch.device("cpu")) == 16
    assert encode_batch_size(torch.device("cuda")) == 64
    assert RunConfig(task="t", out="o").feature_batch_size is None  # None: chosen by device at run time


def test_bad_devices_are_clear_errors_before_any_work():
    import pytest
    import torch

    from kmat.run.device import resolve_device

    for bad in ("tpu", "meta", "gpu0"):
        with pytest.raises(ValueError, match="use auto, cpu, cuda, cuda:N or mps"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            run_bench(arch="tiny", device="cuda", memory=True, log=lambda line: None)
