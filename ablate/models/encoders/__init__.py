"""Encoders: the stride contract (``contract``) and the families that keep it.

``resnet``: torchvision ResNet-18/34/50 with pool letters; ``unet``: seed 001's contracting
path; ``timm``: any timm backbone as ``timm-<name>``. ``build_encoder(name, ...)`` builds any of
them; ``list_encoders()`` says what each offers.
"""

from . import resnet, timm_features, unet
from .contract import (
    DEFAULT_POOL,
    ENCODERS,
    Contract,
    EncoderFamily,
    allowed_encoders,
    build_encoder,
    check_encoder_options,
    check_pool,
    encoder_contract,
    encoder_from_token,
    encoder_pools,
    encoder_token,
    encoder_weights,
    family_of,
    is_weights_file,
    list_encoders,
)
from .resnet import POOLS, ResNetEncoder
from .timm_features import TimmEncoder
from .unet import UNetEncoder

__all__ = [
    "DEFAULT_POOL", "ENCODERS", "POOLS", "Contract", "EncoderFamily", "ResNetEncoder",
    "TimmEncoder", "UNetEncoder", "allowed_encoders", "build_encoder", "check_encoder_options",
    "check_pool", "encoder_contract", "encoder_from_token", "encoder_pools", "encoder_token",
    "encoder_weights", "family_of", "is_weights_file", "list_encoders", "resnet",
    "timm_features", "unet",
]
