"""The decoder's attention values against their references (smp's scSE placement)."""

import pytest
import torch

from ablate import Variant, build_model


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_scse_placed_as_smp_places_it():
    """smp's U-Net decoder puts scSE on the concatenated features of a block with a skip
    (``attention1``) and on every block's output (``attention2``). On the resnet18 U-Net with
    smp's decoder widths, ours adds exactly the parameters of the smp modules that run, stage
    by stage. smp also builds an ``attention1`` for its last block, which has no skip, and never
    calls it; ours builds nothing there, so the totals differ by exactly that dead module."""
    smp = pytest.importorskip("segmentation_models_pytorch",
                              reason="segmentation-models-pytorch is not installed (dev extra)")
    torch.manual_seed(0)
    theirs = {a: smp.Unet("resnet18", encoder_weights=None, decoder_attention_type=a)
              for a in (None, "scse")}
    widths = tuple(theirs["scse"].decoder.blocks[i].conv2[0].out_channels for i in range(5))
    assert widths == (256, 128, 64, 32, 16)
    ours = {a: build_model(Variant(widths=widths, attention=a), 1) for a in ("none", "scse")}

    called = set()
    hooks = [m.register_forward_pre_hook(lambda m, _: called.add(id(m)))
             for m in theirs["scse"].modules()]
    with torch.no_grad():
        theirs["scse"].eval()(torch.zeros(1, 3, 64, 64))
    for h in hooks:
        h.remove()
    blocks = theirs["scse"].decoder.blocks
    dead = [b.attention1 for b in blocks if id(b.attention1) not in called]
    assert [id(d) for d in dead] == [id(blocks[-1].attention1)]  # the skip-less last block

    stages = ours["scse"].decoder.stages
    for stage, block in zip(stages, blocks):
        assert _params(stage.attend_out) == _params(block.attention2)
        if stage.fuse is not None:
            assert _params(stage.attend_fused) == _params(block.attention1)
        else:
            assert stage.attend_fused is None
    smp_delta = _params(theirs["scse"]) - _params(theirs[None])
    our_delta = _params(ours["scse"]) - _params(ours["none"])
    assert our_delta == smp_delta - _params(dead[0]) == 113_991 - 195


def test_gate_scales_the_skip_by_coefficients_in_0_1():
    model = build_model(Variant(widths=(8, 4), skips="23", attention="gate"), 2).eval()
    gate = model.decoder.stages[0].gate
    skip, g = torch.randn(2, 256, 4, 4), torch.randn(2, 512, 4, 4)
    alpha = torch.sigmoid(gate.psi(torch.relu(gate.w_x(skip) + gate.w_g(g))))
    assert alpha.shape == (2, 1, 4, 4) and ((alpha > 0) & (alpha < 1)).all()
    assert torch.allclose(gate(skip, g), skip * alpha)
    assert gate.w_x.bias is None and gate.w_g.bias is not None and gate.psi.bias is not None
