import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ablate import Variant, build_model, profile_model
from ablate.models.profile import exact_macs


def _stack():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),            # 10x10 out
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.ConvTranspose2d(8, 4, 2, stride=2),    # 10x10 -> 20x20
        nn.Flatten(),
        nn.Linear(4 * 20 * 20, 5),
    )


def test_hand_computed_macs_for_a_small_stack():
    conv = 10 * 10 * 8 * (3 * 3 * 3)        # every output element: Cin * k * k MACs
    depthwise = 10 * 10 * 8 * (1 * 3 * 3)   # groups=8: one input channel per output
    transposed = 8 * 10 * 10 * (4 * 2 * 2)  # every input element scattered to Cout * k * k
    linear = 5 * 1600
    prof = profile_model(_stack(), (3, 10, 10))
    assert prof.macs_exact == conv + depthwise + transposed + linear == 49_600
    assert prof.conv_linear_macs == {"exact": 49_600, "thop": 49_600, "fvcore": 49_600,
                                     "torch": 49_600}
    assert prof.mismatches == ()
    assert prof.gflops_torch == pytest.approx(2 * 49_600 / 1e9)
    params = (3 * 8 * 9 + 8) + (8 * 9 + 8) + (8 * 4 * 4 + 4) + (1600 * 5 + 5)
    assert prof.params == params and prof.params_trainable == params
    assert prof.params_m == pytest.approx(params / 1e6)


def test_batchnorm_and_pool_pricing_per_counter():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.AvgPool2d(2), nn.MaxPool2d(2))
    prof = profile_model(model, (1, 8, 8))
    bn_elems = 2 * 8 * 8
    assert prof.macs_exact == 2 * 64
    assert prof.extra_gmacs["thop"]["BatchNorm2d"] * 1e9 == pytest.approx(4 * bn_elems)
    assert prof.extra_gmacs["fvcore"]["batch_norm"] * 1e9 == pytest.approx(2 * bn_elems)
    # avg-pool 2x2 on 2x8x8: one add per input (128) and one divide per output (32)
    assert prof.extra_gmacs["thop"]["AvgPool2d"] * 1e9 == pytest.approx(128 + 32)
    assert "MaxPool2d(0)" in prof.unpriced["thop"] and "ReLU(0)" in prof.unpriced["thop"]
    assert {"avg_pool2d", "max_pool2d"} <= set(prof.unpriced["fvcore"])


def test_functional_ops_outside_modules_are_reported():
    class AddFusion(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return F.interpolate(self.a(x) + self.b(x), scale_factor=2, mode="bilinear")

    prof = profile_model(AddFusion(), (2, 4, 4))
    assert "AddFusion.add" in prof.unpriced["thop"]
    assert "AddFusion.upsample_bilinear2d" in prof.unpriced["thop"]
    assert "add" in prof.unpriced["fvcore"] and "add" in prof.unpriced["torch"]
    assert prof.extra_gmacs["fvcore"]["upsample_bilinear2d"] > 0


def test_mismatch_flagged_when_a_counter_disagrees_with_layer_shapes():
    class Functional(nn.Module):
        """A convolution run through F.conv2d: no module for the exact count to see."""

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x):
            return F.conv2d(x, self.weight, padding=1)

    prof = profile_model(Functional(), (3, 8, 8))
    assert prof.macs_exact == 0
    assert any(m.startswith("fvcore:") for m in prof.mismatches)
    assert any(m.startswith("torch:") for m in prof.mismatches)


@pytest.mark.slow
def test_counters_agree_with_exact_on_every_architecture_family():
    for v in (Variant(pool="SAMA", fusion="add", upsample="transpose", block="dsconv",
                      widths=(32, 16, 16, 8, 8)),
              Variant(encoder="resnet50", widths=(16, 8), skips="23")):
        prof = profile_model(build_model(v, 2), (3, 64, 64))
        assert prof.mismatches == (), (v.id, prof.conv_linear_macs)
        assert prof.gflops_torch == pytest.approx(2 * prof.gmacs_exact)
        assert prof.gmacs_thop > prof.gmacs_exact and prof.gmacs_fvcore > prof.gmacs_exact


def test_resnet18_macs_match_the_published_figure():
    """torchvision lists ResNet-18 at 1.814 GFLOPS (its "FLOPS" are MACs) for 224x224."""
    import torchvision

    prof = profile_model(torchvision.models.resnet18(weights=None))
    assert prof.gmacs_exact == pytest.approx(1.814, abs=0.001)
    assert prof.params == 11_689_512


class _ResNetUNetStyle(nn.Module):
    """A torchvision ResNet-18 kept as ``self.resnet`` whose children are also registered as
    ``layer0..layer4`` (the usual public ResNet-UNet pattern), plus a 1x1 head."""

    def __init__(self, alias: bool = True):
        import torchvision

        super().__init__()
        self.alias = alias
        self.resnet = r = torchvision.models.resnet18(weights=None)
        if alias:
            self.layer0 = nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool)
            self.layer1, self.layer2, self.layer3, self.layer4 = (r.layer1, r.layer2, r.layer3,
                                                                  r.layer4)
        self.head = nn.Conv2d(512, 2, 1)

    def forward(self, x):
        r = self.resnet
        if self.alias:
            stages = (self.layer0, self.layer1, self.layer2, self.layer3, self.layer4)
        else:
            stages = (nn.Sequential(r.conv1, r.bn1, r.relu, r.maxpool), r.layer1, r.layer2,
                      r.layer3, r.layer4)
        for stage in stages:
            x = stage(x)
        return self.head(x)


def test_modules_registered_under_two_names_are_counted_once():
    def conv(hw, c_out, c_in, k):  # square output hw x hw
        return hw * hw * c_out * c_in * k * k

    def stage(hw, c):  # a strided ResNet-18 stage: two basic blocks, 1x1 downsample
        return (conv(hw, c, c // 2, 3) + conv(hw, c, c, 3) + conv(hw, c, c // 2, 1)
                + 2 * conv(hw, c, c, 3))

    # 3x64x64 in: stem 7x7/2 -> 32x32, maxpool -> 16x16, stages at 16, 8, 4, 2; fc never runs
    hand = (conv(32, 64, 3, 7) + 4 * conv(16, 64, 64, 3) + stage(8, 128) + stage(4, 256)
            + stage(2, 512) + conv(2, 2, 512, 1))
    assert hand == 148_049_920

    prof = profile_model(_ResNetUNetStyle(alias=True), (3, 64, 64))
    plain = profile_model(_ResNetUNetStyle(alias=False), (3, 64, 64))
    assert prof.mismatches == () and prof.row()["counter_mismatch"] == ""
    assert prof.macs_exact == hand
    assert prof.conv_linear_macs == {"exact": hand, "thop": hand, "fvcore": hand, "torch": hand}
    assert prof.conv_linear_macs == plain.conv_linear_macs
    # BatchNorm is priced once per module too, so thop's extras and total match the unaliased net
    assert prof.extra_gmacs == plain.extra_gmacs
    assert prof.gmacs_thop == pytest.approx(plain.gmacs_thop)
    assert prof.gmacs_thop == pytest.approx(hand / 1e9 + sum(prof.extra_gmacs["thop"].values()))
    params = 11_689_512 + (512 * 2 + 2)  # torchvision ResNet-18 (fc included) + head, once
    assert prof.params == prof.params_trainable == plain.params == params


def test_caller_model_untouched():
    torch.manual_seed(0)
    model = build_model(Variant(widths=(16, 8), skips="23", fusion="add"), 2)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    model(x)  # non-trivial BN running statistics
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {name: set(vars(m)) for name, m in model.named_modules()}
    model.eval()
    with torch.no_grad():
        out_before = model(x)
    model.train()

    profile_model(model, (3, 64, 64))

    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert {name: set(vars(m)) for name, m in model.named_modules()} == attrs
    assert all(m.training for m in model.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), out_before)


def test_row_has_units_in_names():
    row = profile_model(_stack(), (3, 10, 10)).row()
    assert {"params", "params_m", "macs_exact", "gmacs_thop", "gmacs_fvcore",
            "gflops_torch"} <= set(row)
    assert row["profile_input"] == "3x10x10" and row["counter_mismatch"] == ""


@pytest.mark.parametrize("size", [(3, 0, 4), (), (3, -1, 2)])
def test_bad_input_size(size):
    with pytest.raises(ValueError, match="input_size"):
        profile_model(_stack(), size)


# The decoder axes, by hand: ResNet-18 on 3x64x64 (e4: 512 ch at 2x2, e3: 256 at 4x4, e2: 128 at
# 8x8), two stages of widths 8, 4 fusing e3 and e2 by concat: stage 1 at 4x4 sees 512 upsampled
# channels and 768 fused, stage 2 at 8x8 sees 8 and 136. The conv block is conv-norm-act twice.
TWO = Variant(widths=(8, 4), skips="23")
HW1, HW2 = 4 * 4, 8 * 8


def _delta(**knobs):
    """(params, macs_exact, profile) of TWO with ``knobs`` minus TWO's (2 classes, 3x64x64)."""
    base = build_model(TWO, 2)
    model = build_model(TWO.replace(**knobs), 2)
    prof = profile_model(model, (3, 64, 64))
    params = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    return params, prof.macs_exact - exact_macs(base, (3, 64, 64)), prof


def _scse(c, hw):
    """params and MACs of smp's SCSE on c channels at hw pixels (hidden max(1, c // 16))."""
    h = max(1, c // 16)
    params = (c * h + h) + (h * c + c) + (c + 1)  # cSE squeeze, cSE excite, sSE
    return params, c * h + h * c + hw * c          # cSE convs run on the pooled 1x1


def _gate(skip, g, hw):
    """params and MACs of the attention gate: W_x (no bias), W_g (bias), psi (bias)."""
    f = skip // 2
    return skip * f + (g * f + f) + (f + 1), hw * (skip * f + g * f + f)


@pytest.mark.parametrize("norm", ["gn", "in"])
def test_group_and_instance_norm_cost_what_batchnorm_does(norm):
    params, macs, prof = _delta(norm=norm)
    assert params == 0 and macs == 0 and prof.mismatches == ()  # 2 params per channel, like BN
    model = build_model(TWO.replace(norm=norm), 2)
    layers = list(model.decoder.modules())
    norms = [m for m in layers if isinstance(m, (nn.GroupNorm, nn.InstanceNorm2d))]
    assert len(norms) == 4 and not any(isinstance(m, nn.BatchNorm2d) for m in layers)
    if norm == "gn":
        assert [(m.num_groups, m.num_channels) for m in norms] == [(8, 8), (8, 8), (4, 4), (4, 4)]
    else:
        assert all(m.affine and not m.track_running_stats for m in norms)


def test_group_count_is_the_largest_divisor_not_above_32():
    from ablate.models.layers import gn_groups

    assert [gn_groups(c) for c in (1, 7, 8, 32, 45, 48, 64, 90, 180, 256)] == \
        [1, 7, 8, 32, 15, 24, 32, 30, 30, 32]
    assert all(c % gn_groups(c) == 0 and gn_groups(c) <= 32 for c in range(1, 600))


def test_no_norm_keeps_the_conv_bias():
    params, macs, _ = _delta(norm="none")
    assert params == -(8 + 8 + 4 + 4) and macs == 0  # 2 norm params per channel -> 1 bias each
    model = build_model(TWO.replace(norm="none"), 2)
    convs = [m for m in model.decoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and all(c.bias is not None for c in convs)


@pytest.mark.parametrize("act, kind", [("gelu", nn.GELU), ("silu", nn.SiLU)])
def test_activations_cost_no_params_or_macs(act, kind):
    params, macs, _ = _delta(act=act)
    assert params == 0 and macs == 0
    acts = [m for m in build_model(TWO.replace(act=act), 2).decoder.modules()
            if isinstance(m, (nn.ReLU, nn.GELU, nn.SiLU))]
    assert len(acts) == 4 and all(isinstance(m, kind) for m in acts)


def test_scse_params_and_macs_by_hand():
    params, macs, prof = _delta(attention="scse")
    parts = [_scse(768, HW1), _scse(8, HW1), _scse(136, HW2), _scse(4, HW2)]  # fused, out x2
    assert params == sum(p for p, _ in parts) == 77_822
    assert macs == sum(m for _, m in parts) == 97_304
    assert prof.mismatches == () and prof.params_unrun == 0 and prof.note == ""


def test_scse_on_a_stage_without_a_skip_is_built_counted_and_never_run():
    """As smp builds ``attention1`` on its skip-less last block: stage 2 here fuses no skip, so
    its first scSE (on the 8 upsampled channels) is counted in params, not in MACs, and the
    profile says so."""
    one_skip = TWO.replace(skips="3")
    base = build_model(one_skip, 2)
    model = build_model(one_skip.replace(attention="scse"), 2)
    prof = profile_model(model, (3, 64, 64))
    ran = [_scse(768, HW1), _scse(8, HW1), _scse(4, HW2)]  # stage 1 fused, out; stage 2 out
    unrun = _scse(8, HW2)[0]
    params = sum(p.numel() for p in model.parameters()) - sum(p.numel() for p in base.parameters())
    assert params == sum(p for p, _ in ran) + unrun
    assert prof.macs_exact - exact_macs(base, (3, 64, 64)) == sum(m for _, m in ran)
    assert prof.params_unrun == unrun == 8 * 1 + 1 + 1 * 8 + 8 + 8 + 1
    assert prof.row()["profile_note"] == ("attention: 1 module(s) on decoder stages without a "
                                          f"skip ({unrun} params, counted) never run, as in "
                                          "smp's U-Net decoder")


def test_attention_gate_params_and_macs_by_hand():
    params, macs, prof = _delta(attention="gate")
    parts = [_gate(256, 512, HW1), _gate(128, 8, HW2)]  # gated by the upsampled features
    assert params == sum(p for p, _ in parts) == 107_394
    assert macs == sum(m for _, m in parts) == 2_136_064
    assert prof.mismatches == ()


def test_deep_supervision_heads_counted_in_params_not_in_macs():
    params, macs, prof = _delta(deep_supervision=True)
    assert params == 8 * 2 + 2 and macs == 0  # one auxiliary 1x1 head on stage 1 (8 -> 2)
    assert prof.params_unrun == params
    assert prof.row()["profile_note"].startswith("deep supervision: 1 auxiliary 1x1 heads (18 "
                                                 "params, counted) run in training only")
