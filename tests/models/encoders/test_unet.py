"""Seed 001's U-Net, rebuilt from its own code, against ``encoder: unet`` and seed 001's decoder."""

import pytest
import torch
import torch.nn as nn

from ablate import Variant, build_model, profile_model
from ablate.models.encoders import build_encoder

SEED001 = Variant(encoder="unet", widths=(512, 256, 128, 64), fusion="concat",
                  block="conv_bias", upsample="transpose_half")


class DoubleConv(nn.Module):
    """Seed 001's block, as its code writes it."""

    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.conv(x)


class UNet(nn.Module):
    """Seed 001's U-Net, as its code writes it."""

    def __init__(self, in_channels=3, out_channels=1):
        super().__init__()
        self.enc1 = DoubleConv(in_channels, 64)
        self.enc2 = DoubleConv(64, 128)
        self.enc3 = DoubleConv(128, 256)
        self.enc4 = DoubleConv(256, 512)
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(512, 1024)
        self.up4 = nn.ConvTranspose2d(1024, 512, 2, stride=2)
        self.dec4 = DoubleConv(1024, 512)
        self.up3 = nn.ConvTranspose2d(512, 256, 2, stride=2)
        self.dec3 = DoubleConv(512, 256)
        self.up2 = nn.ConvTranspose2d(256, 128, 2, stride=2)
        self.dec2 = DoubleConv(256, 128)
        self.up1 = nn.ConvTranspose2d(128, 64, 2, stride=2)
        self.dec1 = DoubleConv(128, 64)
        self.out = nn.Conv2d(64, out_channels, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        e4 = self.enc4(self.pool(e3))
        b = self.bottleneck(self.pool(e4))
        d4 = self.dec4(torch.cat([self.up4(b), e4], dim=1))
        d3 = self.dec3(torch.cat([self.up3(d4), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up2(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.out(d1)


def test_seed001_id():
    assert SEED001.id == "unet-M-w512.256.128.64-k0123-cat-cvb-trh"
    assert Variant.from_id(SEED001.id) == SEED001


@pytest.mark.parametrize("classes", [1, 22])
def test_same_parameters_layer_for_layer(classes):
    """Parameters and buffers come in the same order with the same shapes; with the seed's
    weights loaded by position, the outputs are the seed's."""
    torch.manual_seed(0)
    seed, ours = UNet(3, classes).eval(), build_model(SEED001, classes).eval()
    theirs, mine = seed.state_dict(), ours.state_dict()
    assert [v.shape for v in theirs.values()] == [v.shape for v in mine.values()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in seed.parameters())
    ours.load_state_dict(dict(zip(mine, theirs.values())))
    x = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(ours(x), seed(x), atol=1e-5)


@pytest.mark.slow
def test_same_params_and_macs_at_256():
    """31,043,521 parameters (the convolutions keep their bias) and 48.167 G conv MACs at
    256x256, the same by every counter."""
    seed = profile_model(UNet(3, 1), (3, 256, 256))
    ours = profile_model(build_model(SEED001, 1), (3, 256, 256))
    assert ours.params == seed.params == 31_043_521
    assert ours.macs_exact == seed.macs_exact == 48_167_387_136
    assert ours.gmacs_thop == seed.gmacs_thop and ours.gmacs_fvcore == seed.gmacs_fvcore
    assert ours.gflops_torch == seed.gflops_torch
    assert not ours.mismatches


def test_encoder_features_are_the_seed_levels():
    enc = build_encoder("unet").eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 32, 32))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 32, 32), (128, 16, 16), (256, 8, 8),
                                                   (512, 4, 4), (1024, 2, 2)]
    assert all(m.bias is not None for m in enc.modules() if isinstance(m, nn.Conv2d))


def test_quarter_unet_is_a_sixteenth_of_the_macs():
    quarter = SEED001.replace(encoder="unet16", widths=(128, 64, 32, 16))
    full = profile_model(build_model(SEED001, 1), (3, 64, 64)).macs_exact
    small = profile_model(build_model(quarter, 1), (3, 64, 64)).macs_exact
    assert small * 16 == pytest.approx(full, rel=0.01)


@pytest.mark.parametrize("overrides, pattern", [
    ({"pool": "MAA"}, r"pool='MAA' is not allowed \(encoder unet has no pool points.*resnet18"),
    ({"widths": (8,) * 5}, r"5 stages, but unet's deepest feature is at 1/16: 4 stages"),
    ({"pretrained": "IMAGENET1K_V1"}, r"unet has no published weights"),
])
def test_unet_refuses_what_it_cannot_do(overrides, pattern):
    with pytest.raises(ValueError, match=pattern):
        SEED001.replace(**overrides)


def test_pretrained_file(tmp_path):
    torch.manual_seed(3)
    src = build_encoder("unet16")
    path = tmp_path / "unet16.pt"
    torch.save(src.state_dict(), path)
    enc = build_encoder("unet16", pretrained=str(path))
    assert torch.equal(enc.levels[2][1].weight, src.levels[2][1].weight)
    with pytest.raises(ValueError, match="do not fit unet"):
        build_encoder("unet", pretrained=str(path))
