import csv
import random

from kmat.data.fewshot import sample_few_shot
from kmat.data.task import load_task


def _keys(samples):
    return [s.rel for s in samples]


def test_nested_and_k_per_class(loaded_toy_task):
    t = loaded_toy_task
    prev = set()
    for k in (1, 2, 4, 6):
        cur = sample_few_shot(t, t.high, "train", k, seed=1)
        assert len(cur) == k * 3
        assert prev <= set(_keys(cur))
        prev = set(_keys(cur))


def test_seed_dependence(loaded_toy_task):
    t = loaded_toy_task
    a = _keys(sample_few_shot(t, t.high, "train", 2, seed=1))
    b = _keys(sample_few_shot(t, t.high, "train", 2, seed=2))
    assert a == _keys(sample_few_shot(t, t.high, "train", 2, seed=1))
    assert a != b


def test_file_order_independence(toy_task):
    path = toy_task / "toy__hiscan.csv"
    ref = _keys(sample_few_shot(*(lambda t: (t, t.high))(load_task(toy_task)), "train", 3, seed=5))
    rows = list(csv.DictReader(open(path)))
    random.Random(0).shuffle(rows)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    t = load_task(toy_task)
    assert sorted(_keys(sample_few_shot(t, t.high, "train", 3, seed=5))) == sorted(ref)


def test_one_image_per_group(toy_task):
    path = toy_task / "toy__hiscan.csv"
    rows = list(csv.DictReader(open(path)))
    for i, r in enumerate(rows):  # pairs of images share a patient
        r["group_id"] = f"{r['label']}-patient{i // 2}"
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    t = load_task(toy_task)
    picked = sample_few_shot(t, t.high, "train", 3, seed=1)
    groups = [s.group_id for s in picked]
    assert len(groups) == len(set(groups)) == 9
