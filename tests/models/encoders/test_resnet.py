import pytest
import torch
import torchvision

from ablate.models.encoders import ENCODERS, POOLS, ResNetEncoder, build_encoder
from ablate.models.encoders.resnet import RESNETS

ENCODER_CHANNELS = {"resnet18": (64, 64, 128, 256, 512), "resnet34": (64, 64, 128, 256, 512),
                    "resnet50": (64, 256, 512, 1024, 2048)}


def test_one_family_with_pool_letters():
    family = ENCODERS.get("resnet")
    assert family.names == ("resnet18", "resnet34", "resnet50") == tuple(RESNETS)
    assert family.tokens == ("r18", "r34", "r50")
    assert ENCODERS.meta("resnet")["pools"] is POOLS


@pytest.mark.parametrize("name", ENCODER_CHANNELS)
@pytest.mark.parametrize("pool", ["M", "SAMA", "ASMS"])
def test_every_pool_order_keeps_the_strides(name, pool):
    enc = build_encoder(name, pool=pool).eval()
    with torch.no_grad():
        feats = enc(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 96 // s) for s in (2, 4, 8, 16, 32)]
    assert tuple(f.shape[1] for f in feats) == enc.out_channels == ENCODER_CHANNELS[name]
    assert enc.strides == (2, 4, 8, 16, 32) and enc.output_stride == 32


def test_torchvision_published_param_counts():
    """Encoder + fc = torchvision's published totals (11,689,512 / 21,797,672 / 25,557,032)."""
    published = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032}
    for name, total in published.items():
        fc = 1000 * (ENCODER_CHANNELS[name][-1] + 1)
        assert sum(p.numel() for p in ResNetEncoder(name).parameters()) + fc == total


def test_pool_letters_place_modules():
    enc = ResNetEncoder("resnet18", "AMA")
    assert isinstance(enc.pool1, torch.nn.AvgPool2d) and enc.pool1.kernel_size == 3
    assert isinstance(enc.pool2, torch.nn.MaxPool2d) and enc.pool2.kernel_size == 2
    assert isinstance(enc.pool3, torch.nn.AvgPool2d) and enc.pool3.kernel_size == 2
    assert isinstance(enc.pool4, torch.nn.Identity)
    # pooled stages run at stride 1, shortcut included; the default stage keeps its stride
    assert enc.layer2[0].conv1.stride == (1, 1) and enc.layer2[0].downsample[0].stride == (1, 1)
    assert enc.layer4[0].conv1.stride == (2, 2) and enc.layer4[0].downsample[0].stride == (2, 2)


def test_plain_resnet_is_torchvision():
    """pool "M" is torchvision's ResNet-18: same features for the same weights."""
    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None).eval()
    enc = ResNetEncoder("resnet18", "M").eval()
    enc_state = {k: v for k, v in ref.state_dict().items() if not k.startswith("fc.")}
    mapped = {}
    for k, v in enc_state.items():
        k = k.replace("conv1.", "stem.0.", 1) if k.startswith("conv1.") else k
        k = k.replace("bn1.", "stem.1.", 1) if k.startswith("bn1.") else k
        mapped[k] = v
    enc.load_state_dict(mapped)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stem = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        r = ref.layer4(ref.layer3(ref.layer2(ref.layer1(stem))))
        assert torch.allclose(enc(x)[4], r, atol=1e-5)


def test_pretrained_file_loads_for_any_pool_order(tmp_path):
    torch.manual_seed(1)
    src = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(src.state_dict(), path)
    enc = ResNetEncoder("resnet18", "MAAA", pretrained=str(path))
    assert torch.equal(enc.stem[0].weight, src.conv1.weight)
    assert torch.equal(enc.layer2[0].conv1.weight, src.layer2[0].conv1.weight)
    assert torch.equal(enc.layer4[0].downsample[0].weight, src.layer4[0].downsample[0].weight)


def test_pretrained_missing_file_and_cache(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ResNetEncoder("resnet18", "M", pretrained=str(tmp_path / "nope.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    with pytest.raises(FileNotFoundError, match=r"put the file at .*th/hub/checkpoints/resnet18-"):
        ResNetEncoder("resnet18", "M", pretrained="IMAGENET1K_V1")


def test_pretrained_from_torch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    src = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    target = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    target.parent.mkdir(parents=True)
    torch.save(src.state_dict(), target)
    enc = ResNetEncoder("resnet18", "M", pretrained="IMAGENET1K_V1")
    assert torch.equal(enc.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


def test_pretrained_wrong_architecture(tmp_path):
    path = tmp_path / "r50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)
    with pytest.raises(ValueError, match="do not fit resnet18"):
        ResNetEncoder("resnet18", "M", pretrained=str(path))


def test_in_channels_adapted():
    enc = ResNetEncoder("resnet18", "M", in_channels=1).eval()
    assert enc.stem[0].in_channels == 1
    assert enc(torch.randn(1, 1, 32, 32))[4].shape == (1, 512, 1, 1)


def test_pool_registry_letters():
    assert POOLS.names() == ["A", "M", "S"]
