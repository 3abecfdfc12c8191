"""The decoder's attention values against their references (smp's scSE placement)."""

import pytest
import torch

from ablate import Variant, build_model


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _called(model, x) -> set[int]:
    """ids of the modules of ``model`` that one eval forward of ``x`` calls."""
    called = set()
    hooks = [m.register_forward_pre_hook(lambda m, _: called.add(id(m))) for m in model.modules()]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    return called


def test_scse_placed_as_smp_places_it():
    """smp's U-Net decoder builds scSE on the concatenated features of every block
    (``attention1``, called only where a skip is concatenated) and on every block's output
    (``attention2``). On the resnet18 U-Net with smp's decoder widths, ours builds the same
    modules stage by stage, calls the same ones, and so adds exactly smp's parameters."""
    smp = pytest.importorskip("segmentation_models_pytorch",
                              reason="segmentation-models-pytorch is not installed (dev extra)")
    torch.manual_seed(0)
    theirs = {a: smp.Unet("resnet18", encoder_weights=None, decoder_attention_type=a)
              for a in (None, "scse")}
    widths = tuple(theirs["scse"].decoder.blocks[i].conv2[0].out_channels for i in range(5))
    assert widths == (256, 128, 64, 32, 16)
    ours = {a: build_model(Variant(widths=widths, attention=a), 1) for a in ("none", "scse")}
    x = torch.zeros(1, 3, 64, 64)
    called_theirs, called_ours = _called(theirs["scse"], x), _called(ours["scse"], x)

    blocks, stages = theirs["scse"].decoder.blocks, ours["scse"].decoder.stages
    assert len(stages) == len(blocks)
    for stage, block in zip(stages, blocks):
        assert _params(stage.attend_out) == _params(block.attention2)
        assert _params(stage.attend_fused) == _params(block.attention1)
        assert (id(stage.attend_fused) in called_ours) == (id(block.attention1) in called_theirs)
    dead = [b.attention1 for b in blocks if id(b.attention1) not in called_theirs]
    assert [id(d) for d in dead] == [id(blocks[-1].attention1)]  # the skip-less last block
    assert ours["scse"].decoder.unrun == [stages[-1].attend_fused]
    smp_delta = _params(theirs["scse"]) - _params(theirs[None])
    our_delta = _params(ours["scse"]) - _params(ours["none"])
    assert our_delta == smp_delta == 113_991


def test_gate_scales_the_skip_by_coefficients_in_0_1():
    model = build_model(Variant(widths=(8, 4), skips="23", attention="gate"), 2).eval()
    gate = model.decoder.stages[0].gate
    skip, g = torch.randn(2, 256, 4, 4), torch.randn(2, 512, 4, 4)
    alpha = torch.sigmoid(gate.psi(torch.relu(gate.w_x(skip) + gate.w_g(g))))
    assert alpha.shape == (2, 1, 4, 4) and ((alpha > 0) & (alpha < 1)).all()
    assert torch.allclose(gate(skip, g), skip * alpha)
    assert gate.w_x.bias is None and gate.w_g.bias is not None and gate.psi.bias is not None
