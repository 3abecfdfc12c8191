import copy

import torch

from ablate.config import load_config
from ablate.data import DatasetInfo
from ablate.models.model import build_model
from ablate.models.variant import Variant
from ablate.training.losses import build_loss, deep_supervision_weights
from ablate.training.step import build_train_step, train_epoch


def test_a_deeply_supervised_step_trains_on_the_weighted_sum_of_its_heads():
    torch.manual_seed(0)
    info = DatasetInfo("t", 2, 3, None, ("bg", "fg"), ((0, 0, 0), (255, 255, 255)))
    model = build_model(Variant(widths=(8, 8, 8), deep_supervision=True), info.model_outputs)
    images, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 2, (2, 32, 32))
    loss = build_loss("ce+dice", 2)
    outs = copy.deepcopy(model).train()(images)
    expected = sum(w * loss(o, masks) for w, o in zip(deep_supervision_weights(3), outs))
    config = load_config("quick", epochs=1, device="cpu", amp=False, compile=False,
                         channels_last=False, loss="ce+dice")
    step = build_train_step(model.train(), info, config, torch.device("cpu"))
    total = train_epoch(step, [(images, masks)])
    assert len(outs) == 3 and torch.allclose(total.float(), expected)
