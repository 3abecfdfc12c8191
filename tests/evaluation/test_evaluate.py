"""evaluate() on a fake model whose logits are its input: metrics, loss, mode and grad handling."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate.evaluation.evaluate import evaluate, predict, predict_samples
from ablate.evaluation.metrics import scores
from ablate.training.losses import build_loss

IGNORE = 255


class Passthrough(nn.Module):
    """Returns its input as logits (times a parameter), recording how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x * self.scale
        self.calls.append({"training": self.training,
                           "inference": torch.is_inference_mode_enabled(),
                           "requires_grad": out.requires_grad})
        return out


def loader(channels: int, c: int, sizes=(3, 2), seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for n in sizes:
        logits = torch.randn(n, channels, 8, 9, generator=gen)
        masks = torch.randint(0, c, (n, 8, 9), generator=gen)
        masks[torch.rand(masks.shape, generator=gen) < 0.2] = IGNORE
        batches.append((logits, masks))
    return batches


def test_predict_by_hand():
    binary = torch.tensor([-1.0, 0.0, 2.0]).view(1, 1, 1, 3)
    assert predict(binary).tolist() == [[[0, 0, 1]]]
    multi = torch.tensor([[1.0, 5.0], [3.0, 0.0], [2.0, 1.0]]).view(1, 3, 1, 2)
    assert predict(multi).tolist() == [[[1, 0]]]
    with pytest.raises(ValueError, match=r"\(N, K, H, W\)"):
        predict(torch.zeros(3, 4))


@pytest.mark.parametrize("channels, c", [(1, 2), (4, 4)])
def test_metrics_equal_scores_of_concatenated_predictions(channels, c):
    batches = loader(channels, c)
    logits = torch.cat([b[0] for b in batches])
    masks = torch.cat([b[1] for b in batches])
    preds = (logits[:, 0] > 0).long() if channels == 1 else logits.argmax(1)
    expected = scores(preds, masks, c, ignore_index=IGNORE)
    result = evaluate(Passthrough(), batches, c, ignore_index=IGNORE)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, nan_ok=True), key
    assert result["n_images"] == 5 and result["loss"] is None
    assert 0 < result["dice"] < 1


@pytest.mark.parametrize("channels, c", [(1, 2), (3, 3)])
def test_ce_loss_is_the_mean_over_all_valid_pixels(channels, c):
    batches = loader(channels, c, sizes=(4, 1))
    logits = torch.cat([b[0] for b in batches])
    masks = torch.cat([b[1] for b in batches])
    if channels == 1:
        valid = masks != IGNORE
        expected = F.binary_cross_entropy_with_logits(logits[:, 0][valid], masks[valid].float())
    else:
        expected = F.cross_entropy(logits, masks, ignore_index=IGNORE)
    result = evaluate(Passthrough(), batches, c, IGNORE, loss_fn=build_loss("ce", c, IGNORE),
                      device="cpu")
    assert result["loss"] == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize("start_training", [True, False])
def test_eval_mode_inference_and_mode_restored(start_training):
    model = Passthrough().train(start_training)
    evaluate(model, loader(1, 2), 2, IGNORE, loss_fn=build_loss("dice", 2, IGNORE))
    assert model.training is start_training
    assert len(model.calls) == 2
    assert all(not c["training"] and c["inference"] and not c["requires_grad"]
               for c in model.calls)
    assert model.scale.grad is None


def test_mode_restored_when_the_model_fails():
    model = Passthrough().train()
    with pytest.raises(ValueError, match=r"num_classes=3 needs logits of shape \(N, 3, H, W\)"):
        evaluate(model, [(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.int64))], 3)
    assert model.training


def test_empty_loader_raises():
    with pytest.raises(ValueError, match="no batches"):
        evaluate(Passthrough(), [], 2)


def test_predict_samples_returns_cpu_maps_and_restores_mode():
    model = Passthrough().train()
    images = torch.tensor([[[[-1.0, 3.0]], [[2.0, 1.0]]]])
    maps = predict_samples(model, images)
    assert maps.tolist() == [[[1, 0]]] and maps.device.type == "cpu"
    assert model.training and model.calls[-1]["inference"]
