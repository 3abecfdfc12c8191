"""Tests for ablate.bench.loops: the order in which compared runs take turns, and the bare
reference loop on a deeply supervised model."""

from __future__ import annotations

import copy

import pytest
import torch

from ablate.bench.loops import alternate, bare_loop, first_batches, seeded_model
from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.models.variant import Variant


def test_alternate_runs_abba():
    calls = []
    results = alternate(3, *(lambda r, name=name: calls.append((r, name)) or r
                             for name in "abc"))
    assert calls == [(1, "a"), (1, "b"), (1, "c"), (2, "c"), (2, "b"), (2, "a"),
                     (3, "a"), (3, "b"), (3, "c")]
    assert results == ([1, 2, 3],) * 3


@pytest.mark.slow
def test_the_bare_loop_trains_every_head_of_a_deeply_supervised_model():
    spec = DataSpec("shapes", image_size=32, options={"n_train": 4, "n_val": 1})
    info, splits = load_dataset(spec, cache_dir=None)
    loader = BatchLoader(splits["train"], 2, "cpu", shuffle=True, drop_last=True)
    config = load_config("quick", image_size=32, batch_size=2, device="cpu", amp=False,
                         channels_last=False)
    variant = Variant(widths=(8, 8), skips=("e2", "e3"), deep_supervision=True)
    model = seeded_model(variant, info, torch.device("cpu"))
    before = copy.deepcopy(model.state_dict())
    epoch = bare_loop(model, info, config, torch.device("cpu"))
    assert epoch(loader, 1, first_batches(loader, 1)) > 0
    for name in ("head.weight", "aux_heads.0.weight"):  # the auxiliary head's loss reached it
        assert not torch.equal(model.state_dict()[name], before[name]), name
