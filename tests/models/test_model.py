import pytest
import torch

from ablate import Variant, build_model, profile_model
from ablate.models.encoders import list_encoders
from ablate.models.variant import KNOBS

BASE = Variant(widths=(16, 16, 8, 8))
ENCODER_NAMES = [row["encoder"] for row in list_encoders() if not row["example"]]


def _variants():
    out = [BASE.replace(encoder=name) for name in ENCODER_NAMES]
    for name in KNOBS.names():  # every value of every knob with finitely many
        levels = KNOBS.get(name).levels
        out += [BASE.replace(**{name: v}) for v in (levels() if levels else ())]
    out += [BASE.replace(pool=p) for p in ("A", "S", "MAM", "MAA", "AAM", "SSSS", "AMAM")]
    out += [BASE.replace(skips=s) for s in ("none", "e3", "23", "013")]
    out += [BASE.replace(widths=w, skips="none") for w in ((8,), (8, 8, 8), (8, 8, 8, 8, 8))]
    out += [BASE.replace(widths=(8, 8, 8, 8, 8), fusion="add", upsample="transpose")]
    # the decoder axes with each other and with stages that fuse no skip
    out += [BASE.replace(widths=(8, 8, 8, 8, 8), skips="13", fusion="add", block="dsconv",
                         upsample="transpose_half", norm="none", act="gelu", attention=a,
                         deep_supervision=True) for a in ("scse", "gate")]
    out += [BASE.replace(norm="gn", act="silu", attention="gate", block="conv_bias")]
    return list(dict.fromkeys(out))


@pytest.mark.parametrize("variant", _variants(), ids=lambda v: v.id)
def test_every_knob_value_builds_runs_and_keeps_size(variant):
    torch.manual_seed(0)
    model = build_model(variant, num_classes=3)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = model(x)  # deep supervision: a tuple in training mode, one logits per stage
    outs = out if variant.deep_supervision else (out,)
    assert isinstance(out, tuple) == variant.deep_supervision
    assert len(outs) == (len(variant.widths) if variant.deep_supervision else 1)
    assert all(o.shape == (2, 3, 64, 64) for o in outs)
    sum(o.mean() for o in outs).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.head.parameters())


@pytest.mark.parametrize("size", [(65, 97), (17, 17), (1, 40), (224, 160)])
def test_any_input_size(size):
    model = build_model(BASE, num_classes=2).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_classes_and_channels_from_data():
    model = build_model(BASE, num_classes=21, in_channels=1).eval()
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 21, 32, 32)
    for bad in ({"num_classes": 0}, {"num_classes": 2.5}, {"in_channels": -1}):
        kwargs = {"num_classes": 2, **bad}
        with pytest.raises(ValueError, match=f"{next(iter(bad))}=.*positive integer"):
            build_model(BASE, **kwargs)
    with pytest.raises(TypeError, match="ablate.Variant"):
        build_model({"pool": "M"}, 2)


def _params(v):
    return sum(p.numel() for p in build_model(v, 2).parameters())


@pytest.mark.slow
def test_pool_letters_M_A_do_not_change_params_or_conv_macs():
    variants = [Variant(pool=p) for p in ("M", "MAM", "MAA", "AAM", "AAAA")]
    profiles = [profile_model(build_model(v, 2), (3, 64, 64)) for v in variants]
    assert len({p.params for p in profiles}) == 1
    assert len({p.macs_exact for p in profiles}) == 1
    # a strided-conv stem adds exactly one 3x3 64->64 conv and its BN
    assert _params(Variant(pool="S")) - _params(Variant()) == 64 * 64 * 9 + 2 * 64
    # thop prices average pooling but not max pooling
    thop = {v.pool: p.gmacs_thop for v, p in zip(variants, profiles)}
    assert thop["MAA"] > thop["MAM"] > thop["M"]


def test_fewer_skips_remove_exactly_their_input_channels():
    """Dropping e0 with concat + conv block removes a 64-channel slice of stage 4's first conv."""
    w = (32, 32, 16, 8)
    full, no_e0 = Variant(widths=w), Variant(widths=w, skips="123")
    assert _params(full) - _params(no_e0) == 64 * w[3] * 9
    no_e0_e1 = Variant(widths=w, skips="23")
    assert _params(no_e0) - _params(no_e0_e1) == 64 * w[2] * 9


def test_add_vs_concat_exact_param_delta():
    """One stage fusing e3 (256 ch) into upsampled e4 (512 ch), conv block of width w."""
    w = 16
    cat = Variant(widths=(w,), skips="3", fusion="concat")
    add = Variant(widths=(w,), skips="3", fusion="add")
    concat_extra = 256 * w * 9                 # first conv sees 512 + 256 inputs instead of 512
    projection = 256 * 512 + 2 * 512           # 1x1 conv 256 -> 512 without bias, and BN
    assert _params(cat) - _params(add) == concat_extra - projection


def test_narrower_widths_cost_less():
    wide = profile_model(build_model(Variant(widths=(180, 90, 45, 45)), 2), (3, 64, 64))
    narrow = profile_model(build_model(Variant(widths=(128, 64, 32, 32)), 2), (3, 64, 64))
    assert narrow.params < wide.params and narrow.macs_exact < wide.macs_exact


def test_deep_supervision_heads_train_only():
    v = BASE.replace(deep_supervision=True)
    model = build_model(v, 2)
    assert [h.in_channels for h in model.aux_heads] == [16, 16, 8]
    model.eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        final = model(x)
        assert isinstance(final, torch.Tensor)
        model.train()
        for m in model.modules():  # training mode, but BN on its running statistics
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
        outs = model(x)
    assert len(outs) == 4 and torch.allclose(outs[0], final, atol=1e-6)
    plain = build_model(BASE, 2)
    assert {k: t.shape for k, t in plain.state_dict().items()}.items() <= \
        {k: t.shape for k, t in model.state_dict().items()}.items()


#: A plugin with an encoder family whose builder takes a knob reaching the encoder.
ENCODER_KNOB_PLUGIN = '''"""A test plugin: the tiny encoder and its big_stem knob."""
from torch import nn

from ablate.models.encoders import ENCODERS, Contract, EncoderFamily
from ablate.models.variant import flag, register_knob


class Tiny(nn.Module):
    """Two stride-2 convs (features at 1/2 and 1/4); ``big_stem``: the first is 5x5, not 3x3."""

    def __init__(self, name, in_channels=3, pretrained=None, big_stem=False):
        super().__init__()
        k = 5 if big_stem else 3
        self.one = nn.Conv2d(in_channels, 4, k, stride=2, padding=k // 2)
        self.two = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.out_channels, self.strides, self.output_stride = (4, 8), (2, 4), 4

    def forward(self, x):
        first = self.one(x)
        return [first, self.two(first)]


ENCODERS.register("tiny", pools=None)(EncoderFamily(
    contract=lambda name: Contract((4, 8), (2, 4)), build=Tiny, weights=lambda name: (),
    names=("tiny",), tokens=("tiny",)))
register_knob(flag("big_stem", "bst", "a 5x5 first conv (tiny encoder)", reaches="encoder"))
'''


def test_a_plugin_knob_reaching_the_encoder_goes_to_the_family_that_takes_it(plugin_sandbox):
    from ablate.common.plugins import load_plugins
    from ablate.models.encoders import build_encoder

    small = Variant(widths=(8, 8))
    before = _params(small)
    (plugin_sandbox / "tinyenc.py").write_text(ENCODER_KNOB_PLUGIN)
    load_plugins(["tinyenc.py"])
    assert _params(small) == before  # at its default the knob reaches no builder
    tiny = Variant(encoder="tiny", widths=(8, 8))
    big = tiny.replace(big_stem="on")
    assert big.id == tiny.id + "-bst" and Variant.from_id(big.id) == big
    assert _params(big) - _params(tiny) == 4 * 3 * (25 - 9)  # the stem's kernel, 3x3 -> 5x5
    assert build_model(big, 2).encoder.one.kernel_size == (5, 5)
    refused = (r"big_stem=True needs an encoder family that takes `big_stem` \(tiny\); encoder "
               r"resnet18 \(family resnet\) does not \(its builder ResNetEncoder has no "
               r"`big_stem` argument\)")
    with pytest.raises(ValueError, match=refused):
        small.replace(big_stem=True)  # when the variant is made
    with pytest.raises(ValueError, match=refused):
        build_encoder("resnet18", big_stem=True)  # and when the encoder is built
