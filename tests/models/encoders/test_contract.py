"""The stride contract, checked for every registered encoder (and the timm examples)."""

import pytest
import torch
from torch import nn

from ablate import Variant, build_model
from ablate.models.encoders import (
    ENCODERS,
    Contract,
    EncoderFamily,
    build_encoder,
    encoder_contract,
    encoder_from_token,
    encoder_token,
    list_encoders,
)

ENCODER_NAMES = [row["encoder"] for row in list_encoders()]


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_encoder_keeps_its_contract(name):
    torch.manual_seed(0)
    enc = build_encoder(name).eval()
    contract = encoder_contract(name)
    h, w = 64, 96
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, h, w))
    assert isinstance(feats, list) and len(feats) == len(contract.strides)
    assert tuple(f.shape[1] for f in feats) == enc.out_channels == contract.channels
    assert [tuple(f.shape[-2:]) for f in feats] == [(h // s, w // s) for s in contract.strides]
    assert enc.strides == contract.strides and enc.output_stride == contract.strides[-1]
    assert all(b == 2 * a for a, b in zip(contract.strides, contract.strides[1:]))
    assert encoder_from_token(encoder_token(name)) == name
    assert "-" not in encoder_token(name)


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_decoder_reads_the_contract(name):
    """Skip e_k joins the stage at e_k's stride; the last allowed stage reaches full resolution,
    one stage fewer stops at stride 2 (the head resizes), one more is refused."""
    contract = encoder_contract(name)
    assert Variant(encoder=name).skips == contract.skips
    stages = contract.max_stages
    model = build_model(Variant(encoder=name, widths=(8,) * stages), num_classes=2).eval()
    assert model.decoder.output_stride == 1
    for k, skip in enumerate(contract.skips):
        stage = contract.stage_of(skip)
        assert contract.output_stride // 2 ** stage == contract.strides[k]
        upsampled = contract.channels[-1] if stage == 1 else 8
        fuse = model.decoder.stages[stage - 1].fuse
        assert fuse.out_channels == upsampled + contract.channels[k]
    no_skip = [s for s in model.decoder.stages if s.fuse is None]
    assert len(no_skip) == stages - len(contract.skips)
    shorter = build_model(Variant(encoder=name, widths=(8,) * (stages - 1), skips="none"), 2)
    assert shorter.decoder.output_stride == 2
    x = torch.randn(1, 3, 40, 72)  # concat fails unless every skip matches its stage's size
    with torch.no_grad():
        assert model(x).shape == shorter.eval()(x).shape == (1, 2, 40, 72)
    with pytest.raises(ValueError, match=rf"{stages + 1} stages.*1/{contract.output_stride}"):
        Variant(encoder=name, widths=(8,) * (stages + 1), skips="none")


@pytest.mark.parametrize("channels, strides", [
    ((8, 16, 32), (2, 4, 4)),     # no halving between the last two
    ((8, 16), (3, 6)),            # not a power of two
    ((8, 16, 32), (4, 2, 1)),     # deepest first
    ((8,), (2,)),                 # a single feature has nothing to skip
    ((8, 16), (2, 4, 8)),         # one channel count per feature
])
def test_contract_refuses_what_a_decoder_cannot_read(channels, strides):
    with pytest.raises(ValueError, match="contract|one channel count per feature"):
        Contract(channels, strides)


def test_contract_facts():
    convnext_like = Contract((96, 192, 384, 768), (4, 8, 16, 32))
    assert convnext_like.skips == ("e0", "e1", "e2")
    assert convnext_like.max_stages == 5 and convnext_like.stage_of("e0") == 3
    assert convnext_like.describe() == "e0 1/4, e1 1/8, e2 1/16; e3 1/32 feeds the decoder"
    full = Contract((64, 128, 256, 512, 1024), (1, 2, 4, 8, 16))
    assert full.max_stages == 4 and full.stage_of("e0") == 4


class _Liar(nn.Module):
    """Declares strides its features do not have."""

    def __init__(self, name, in_channels, pretrained):
        super().__init__()
        self.out_channels, self.strides, self.output_stride = (4, 8), (2, 4), 4

    def forward(self, x):
        return [x, x]


def test_a_new_family_is_one_registration_and_is_checked():
    family = EncoderFamily(contract=lambda name: Contract((4, 8), (1, 2)), build=_Liar,
                           weights=lambda name: (), names=("liar",), tokens=("liar",))
    ENCODERS.register("test-liar", pools=None)(family)
    try:
        assert encoder_contract("liar").strides == (1, 2)
        with pytest.raises(RuntimeError, match="declares .* promised"):
            build_encoder("liar")
        with pytest.raises(ValueError, match=r"pool='MA'.*no pool points.*resnet18"):
            Variant(encoder="liar", pool="MA", widths=(8,))
    finally:
        ENCODERS.unregister("test-liar")
    with pytest.raises(ValueError, match="encoder='liar' is not allowed"):
        Variant(encoder="liar")
