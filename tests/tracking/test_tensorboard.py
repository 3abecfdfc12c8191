"""The TensorBoard sink, read back through TensorBoard's own event reader."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

pytestmark = pytest.mark.slow


def _events(folder):
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_one_directory_per_cell_with_each_epoch_once(tracked_study):
    root = tracked_study.exp_dir / "tensorboard"
    for variant, history in tracked_study.history.items():
        events = _events(root / variant / "seed0")
        dice = [(e.step, e.value) for e in events.Scalars("dice")]
        # the killed attempt's epoch 1 is dropped by the restart marker, the new one logged once
        assert [s for s, _ in dice] == list(history["epoch"])
        assert [v for _, v in dice] == pytest.approx(list(history["dice"]))
        assert events.Scalars("final/params")[0].value == pytest.approx(
            tracked_study.runs.set_index("variant").loc[variant, "params"])
        assert "samples" in events.Tags()["images"]


def test_seed_aggregates_and_study_text(tracked_study):
    root = tracked_study.exp_dir / "tensorboard"
    for variant in tracked_study.runs["variant"]:
        events = _events(root / variant / "seeds")
        ok = tracked_study.runs[tracked_study.runs["variant"] == variant]
        (mean,) = events.Scalars("seeds/dice_mean")  # rewritten on each report, not appended
        assert mean.value == pytest.approx(ok["dice"].mean())
    study = _events(root / "_study")
    assert "report/text_summary" in study.Tags()["tensors"]
