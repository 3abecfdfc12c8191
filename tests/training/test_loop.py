import math

import pandas as pd
import pytest
import torch

from ablate.config import load_config
from ablate.data import BatchLoader, DataSpec, load_dataset
from ablate.evaluation.evaluate import evaluate
from ablate.models.model import build_model
from ablate.models.variant import Variant
from ablate.training import loop as train_module
from ablate.training import step as step_module
from ablate.training.loop import drop_resume_state, train

TINY = Variant(widths=(16, 8, 8, 8), block="dsconv")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    spec = DataSpec("shapes", image_size=32, options={"n_train": 32, "n_val": 16})
    return load_dataset(spec, tmp_path_factory.mktemp("cache"))


def _cfg(**kw):
    """The quick recipe at tiny sizes on the plain fp32 path (amp off), so that scores can be
    recomputed exactly from the saved weights; the switches have their own test."""
    budget = {} if {"steps", "images"} & set(kw) else {"epochs": 2}
    return load_config("quick", **{**budget, "image_size": 32, "batch_size": 8,
                                   "device": "cpu", "samples": 2, "encoder_init": None,
                                   "lr": 1e-3, "amp": False, **kw})


def _val_dice(state, data):
    """Validation Dice of a checkpoint's weights loaded into a fresh model, evaluated on its own."""
    info, splits = data
    model = build_model(TINY, info.model_outputs)
    model.load_state_dict(state["model"])
    scores = evaluate(model, BatchLoader(splits["val"], 5), info.num_classes, info.ignore_index)
    return scores["dice"]


@pytest.mark.slow
def test_same_seed_same_metrics_and_different_seed_differs(data):
    a = train(TINY, data, _cfg(), seed=3, progress=False)
    b = train(TINY, data, _cfg(), seed=3, progress=False)
    c = train(TINY, data, _cfg(), seed=4, progress=False)
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics and [h["train_loss"] for h in a.history] == [
        h["train_loss"] for h in b.history]
    assert c.metrics != a.metrics


@pytest.mark.slow
def test_outputs_history_checkpoints_and_samples(data, tmp_path):
    res = train(TINY, data, _cfg(), seed=0, out_dir=tmp_path, progress=False)
    assert res.status == "ok" and res.epochs_run == 2
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,dice") and len(lines) == 3
    assert (tmp_path / "samples.png").stat().st_size > 1000
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and Variant.from_dict(last["variant"]) == TINY
    assert last["config"]["epochs"] == 2
    # the reported metrics are those of the last checkpoint's weights, recomputed independently
    assert _val_dice(last, data) == pytest.approx(res.metrics["dice"], abs=1e-6)
    assert res.history[0]["lr"] == pytest.approx(1e-3)
    # cosine schedule: T_max = epochs, so epoch 2 starts half-way down
    assert res.history[1]["lr"] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    n_images = (32 // 8) * 8 * 2
    assert res.train_images_per_s == pytest.approx(n_images / res.train_time_s)


@pytest.mark.slow
def test_dropping_resume_state_keeps_the_reported_weights_in_a_smaller_file(data, tmp_path):
    res = train(TINY, data, _cfg(), seed=0, out_dir=tmp_path, progress=False)
    last_path, final_path = (tmp_path / "checkpoints" / name for name in ("last.pt", "final.pt"))
    last_size = last_path.stat().st_size
    drop_resume_state(tmp_path)
    assert not last_path.exists() and final_path.stat().st_size < last_size / 2  # AdamW: 2 moments
    final = torch.load(final_path, weights_only=True)
    assert "optimizer" not in final and final["epoch"] == 2 and final["seed"] == 0
    assert _val_dice(final, data) == pytest.approx(res.metrics["dice"], abs=1e-6)
    drop_resume_state(tmp_path)  # nothing left to drop: a no-op
    assert final_path.is_file()


@pytest.mark.slow
def test_a_budget_in_steps_equal_to_whole_epochs_trains_the_same_run(data):
    by_epochs = train(TINY, data, _cfg(epochs=2), seed=5, progress=False)
    by_steps = train(TINY, data, _cfg(steps=8), seed=5, progress=False)  # 4 batches per epoch
    by_images = train(TINY, data, _cfg(images=64), seed=5, progress=False)
    assert by_steps.metrics == by_epochs.metrics == by_images.metrics
    drop = ("time_s",)  # wall clock differs; losses, lrs and evaluation points do not
    assert [{k: v for k, v in h.items() if k not in drop} for h in by_steps.history] == [
        {k: v for k, v in h.items() if k not in drop} for h in by_epochs.history]


@pytest.mark.parametrize("budget, steps, epochs", [({"steps": 6}, 6, 2), ({"images": 40}, 5, 2),
                                                   ({"steps": 3}, 3, 1)])
def test_a_budget_in_steps_or_images_stops_after_that_many_optimizer_steps(
        data, monkeypatch, budget, steps, epochs):
    calls = []
    real = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step",
                        lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    res = train(TINY, data, _cfg(**budget), seed=0, progress=False)
    assert res.status == "ok" and len(calls) == steps == res.steps
    assert res.epochs == epochs and [h["epoch"] for h in res.history] == list(range(1, epochs + 1))
    if epochs == 2:  # the cosine schedule spans the budget: the last epoch starts half-way down
        assert res.history[1]["lr"] == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["amp", "channels_last"])
def test_a_cpu_speed_switch_keeps_the_results_of_the_plain_path(data, switch):
    """The switches `ablate bench` times (and the quick preset may turn on) change speed, not
    what is learnt: the same run with the switch on stays within a small tolerance of plain fp32."""
    if switch == "amp" and step_module.amp_dtype(torch.device("cpu")) is None:
        pytest.skip("this CPU has no bf16 instructions: amp changes nothing here")
    off = {"epochs": 3, "amp": False, "channels_last": False}
    plain = train(TINY, data, _cfg(**off), seed=2, progress=False)
    switched = train(TINY, data, _cfg(**{**off, switch: True}), seed=2, progress=False)
    losses = [(h["train_loss"], g["train_loss"]) for h, g in zip(plain.history,
                                                                  switched.history)]
    assert all(abs(a - b) <= 0.02 * a for a, b in losses), losses
    assert switched.metrics["dice"] == pytest.approx(plain.metrics["dice"], abs=0.02)
    assert switched.metrics["val_loss"] == pytest.approx(plain.metrics["val_loss"], rel=0.02)


@pytest.mark.slow
def test_resume_matches_uninterrupted(data, tmp_path):
    full = train(TINY, data, _cfg(epochs=3), seed=1, out_dir=tmp_path / "a", progress=False)

    class Stop(Exception):
        pass

    def interrupt(epoch, scores):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(TINY, data, _cfg(epochs=3), seed=1, out_dir=tmp_path / "b", progress=False,
              on_epoch=interrupt)
    resumed = train(TINY, data, _cfg(epochs=3), seed=1, out_dir=tmp_path / "b", progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.metrics == pytest.approx(full.metrics, abs=1e-6)


@pytest.mark.slow
def test_best_checkpoint_follows_the_metric_and_its_direction(data, tmp_path, monkeypatch):
    """With ``metric="val_loss"`` best.pt holds the epoch of the lowest val_loss, through a
    resume too; Dice, scripted to peak at another epoch, is not followed."""
    scripted = {1: {"val_loss": 0.5, "dice": 0.3}, 2: {"val_loss": 0.2, "dice": 0.1},
                3: {"val_loss": 0.4, "dice": 0.9}}
    real, calls = train_module.evaluate, []

    def evaluate_scripted(*args, **kwargs):
        calls.append(1)
        return {**real(*args, **kwargs), **scripted[len(calls)]}

    class Stop(Exception):
        pass

    def interrupt(epoch, scores):
        if epoch == 2:
            raise Stop

    monkeypatch.setattr(train_module, "evaluate", evaluate_scripted)
    with pytest.raises(Stop):
        train(TINY, data, _cfg(epochs=3), seed=0, out_dir=tmp_path, progress=False,
              on_epoch=interrupt, metric="val_loss")
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["metric"] == "val_loss" and last["best"] == 0.2
    train(TINY, data, _cfg(epochs=3), seed=0, out_dir=tmp_path, progress=False,
          metric="val_loss")
    history = pd.read_csv(tmp_path / "history.csv")
    lowest = int(history.loc[history["val_loss"].idxmin(), "epoch"])
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert list(history["epoch"]) == [1, 2, 3] and lowest == 2
    assert best["epoch"] == lowest and best["val_loss"] == history["val_loss"].min()
    assert "dice" not in best


def test_an_unknown_metric_is_refused_with_the_allowed_names(data):
    with pytest.raises(ValueError, match="unknown metric 'dsc'; allowed: dice"):
        train(TINY, data, _cfg(epochs=1), seed=0, progress=False, metric="dsc")


def test_resume_refuses_a_different_run(data, tmp_path):
    train(TINY, data, _cfg(epochs=1), seed=0, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="different run .*seed"):
        train(TINY, data, _cfg(epochs=1), seed=1, out_dir=tmp_path, progress=False)


def test_nan_loss_fails_the_run_with_reason(data, monkeypatch):
    real = step_module.build_loss

    def nan_loss(*args):
        loss = real(*args)
        return lambda logits, target: loss(logits, target) * math.nan

    monkeypatch.setattr(step_module, "build_loss", nan_loss)
    res = train(TINY, data, _cfg(), seed=0, progress=False)
    assert res.status == "failed" and "non-finite training loss" in res.error
    assert res.model is None and res.metrics == {}


def test_out_of_memory_fails_the_run(data, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_module, "evaluate", oom)
    res = train(TINY, data, _cfg(), seed=0, progress=False)
    assert res.status == "failed" and "out of memory" in res.error


def test_image_size_must_match_loaded_data(data):
    with pytest.raises(ValueError, match="32 px but image_size=64"):
        train(TINY, data, _cfg(image_size=64), seed=0, progress=False)


@pytest.mark.slow
def test_learns_shapes_well_above_chance(tmp_path):
    """A few CPU epochs take Dice far above what predicting all foreground scores."""
    spec = DataSpec("shapes", image_size=48, options={"n_train": 128, "n_val": 48,
                                                            "style": "hard"})
    info, splits = load_dataset(spec, tmp_path)
    res = train(Variant(widths=(32, 16, 16, 16), block="dsconv"), (info, splits),
                _cfg(epochs=6, image_size=48, batch_size=8, loss="bce+dice", lr=3e-3), seed=0,
                progress=False)
    fg = (splits["val"].masks == 1).mean()
    chance = 2 * fg / (1 + fg)  # Dice of the all-foreground prediction
    assert res.status == "ok"
    assert res.metrics["dice"] > 1.5 * chance, (res.metrics, chance)


def test_optimizer_and_schedule_from_the_config(data):
    res = train(TINY, data, _cfg(optimizer="sgd", scheduler="step", step_gamma=0.5), seed=0,
                progress=False)
    assert res.status == "ok"
    assert [h["lr"] for h in res.history] == pytest.approx([1e-3, 5e-4])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_with_the_full_presets_switches(data):
    """bf16 autocast and channels_last, as the full preset sets them, train and evaluate."""
    res = train(TINY, data, _cfg(device="cuda", amp=True, channels_last=True), seed=0,
                progress=False)
    assert res.status == "ok", res.error
    assert res.epochs_run == 2 and math.isfinite(res.metrics["dice"])
    assert res.peak_mem_mb > 0 and res.env["device"] == torch.cuda.get_device_name()
