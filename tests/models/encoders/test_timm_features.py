"""timm backbones as encoders: built, run, profiled and trained at a tiny size; no download."""

import pytest
import timm
import torch

from ablate import Variant, build_model, profile_model
from ablate.config import load_config
from ablate.data import DataSpec, load_dataset
from ablate.models.encoders import build_encoder, encoder_contract
from ablate.training.loop import train

#: one small member per family, and its skips
FAMILIES = {
    "timm-mobilenetv3_small_050": ("e0", "e1", "e2", "e3"),
    "timm-efficientnet_b0": ("e0", "e1", "e2", "e3"),
    "timm-regnety_002": ("e0", "e1", "e2", "e3"),
    "timm-convnext_atto": ("e0", "e1", "e2"),
}


@pytest.mark.parametrize("name, skips", FAMILIES.items())
def test_builds_and_runs(name, skips):
    torch.manual_seed(0)
    variant = Variant(encoder=name, widths=(16, 16, 8, 8), block="dsconv")
    assert variant.skips == skips and Variant.from_id(variant.id) == variant
    assert variant.id.startswith(f"timm.{name[5:]}-M-w16.16.8.8-k{''.join(s[1] for s in skips)}")
    model = build_model(variant, num_classes=3)
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3, 64, 64)
    out.mean().backward()
    assert torch.isfinite(x.grad).all()
    # the encoder is timm's own feature extractor, parameter for parameter
    reference = timm.create_model(name[5:], features_only=True, pretrained=False)
    assert sum(p.numel() for p in model.encoder.parameters()) == \
        sum(p.numel() for p in reference.parameters())


@pytest.mark.parametrize("name", ["timm-mobilenetv3_small_050", "timm-convnext_atto"])
def test_profiled_like_any_model(name):
    """Params and MACs = timm's feature extractor's + the decoder's and head's, these counted
    here by hand from the layers' output shapes."""
    model = build_model(Variant(encoder=name, widths=(16, 16, 8, 8), block="dsconv"), 3)
    reference = timm.create_model(name[5:], features_only=True, pretrained=False)
    prof = profile_model(model, (3, 64, 64))
    own = profile_model(reference, (3, 64, 64))
    rest = [model.decoder, model.head]
    assert prof.params == own.params + sum(p.numel() for m in rest for p in m.parameters())
    assert prof.macs_exact == own.macs_exact + _conv_macs(model, rest, (1, 3, 64, 64))
    assert not prof.mismatches  # thop, fvcore and torch agree on conv + linear


def _conv_macs(model, parts, shape):
    """Multiply-accumulates of the convolutions inside ``parts`` in one forward of ``model``."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * module.out_channels * k
        else:
            total += output.numel() * module.in_channels // module.groups * k

    convs = [m for part in parts for m in part.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    handles = [m.register_forward_hook(count) for m in convs]
    with torch.no_grad():
        model.eval()(torch.zeros(shape))
    for h in handles:
        h.remove()
    return total


def test_convnext_starts_at_stride_4():
    contract = encoder_contract("timm-convnext_atto")
    assert contract.strides == (4, 8, 16, 32) and contract.skips == ("e0", "e1", "e2")
    with pytest.raises(ValueError, match=r"unknown skip 'e3' for encoder timm-convnext_atto"):
        Variant(encoder="timm-convnext_atto", skips="0123")
    # four stages stop at 1/2 and the head resizes; five reach full resolution
    assert build_model(Variant(encoder="timm-convnext_atto"), 2).decoder.output_stride == 2


@pytest.mark.parametrize("name, pattern", [
    ("timm-notanet_b9", r"encoder='timm-notanet_b9' is not allowed \(timm has no model"),
    ("timm-vit_tiny_patch16_224", r"cannot feed a U-Net decoder.*half the resolution"),
    ("timm-", r"encoder='timm-' is not allowed"),
])
def test_refused_names(name, pattern):
    with pytest.raises(ValueError, match=pattern):
        Variant(encoder=name)


def test_pool_letters_refused():
    with pytest.raises(ValueError, match=r"pool='AAM'.*no pool points"):
        Variant(encoder="timm-efficientnet_b0", pool="AAM")


def test_weights_from_a_local_file_only(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(5)
    source = timm.create_model("mobilenetv3_small_050", pretrained=False)
    path = tmp_path / "mnv3.pth"
    torch.save(source.state_dict(), path)
    enc = build_encoder("timm-mobilenetv3_small_050", pretrained=str(path))
    assert torch.equal(enc.body.conv_stem.weight, source.conv_stem.weight)
    assert torch.equal(enc.body.blocks[2][0].conv_pw.weight, source.blocks[2][0].conv_pw.weight)
    one_channel = build_encoder("timm-mobilenetv3_small_050", in_channels=1, pretrained=str(path))
    assert one_channel.body.conv_stem.weight.shape[1] == 1

    tag = Variant(encoder="timm-efficientnet_b0", pretrained="ra_in1k")
    assert tag.id.endswith("-ptra_in1k") and Variant.from_id(tag.id) == tag
    with pytest.raises(FileNotFoundError, match=r"pretrained='ra_in1k'.*not in the local cache"):
        build_model(tag, 2)
    # a tag's file already in the torch hub cache is read from there
    cached = timm.create_model("efficientnet_b0", pretrained=False)
    url = timm.models.get_pretrained_cfg("efficientnet_b0.ra_in1k").url
    target = tmp_path / "torch" / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    torch.save(cached.state_dict(), target)
    enc = build_model(tag, 2).encoder
    assert torch.equal(enc.body.conv_stem.weight, cached.conv_stem.weight)
    with pytest.raises(ValueError, match=r"pretrained='in22k'.*ra_in1k"):
        Variant(encoder="timm-efficientnet_b0", pretrained="in22k")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_encoder("timm-efficientnet_b0", pretrained=str(tmp_path / "missing.pth"))


def test_trains(tmp_path):
    data = load_dataset(DataSpec("shapes", image_size=32, options={"n_train": 16, "n_val": 8}),
                        tmp_path)
    config = load_config("quick", epochs=2, image_size=32, batch_size=8, device="cpu",
                         samples=0, encoder_init=None)
    variant = Variant(encoder="timm-mobilenetv3_small_050", widths=(16, 8, 8, 8), block="dsconv")
    result = train(variant, data, config, seed=0, progress=False)
    assert result.status == "ok" and result.epochs_run == 2
    assert result.history[1]["train_loss"] < result.history[0]["train_loss"]
