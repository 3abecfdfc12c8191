"""ablate: does this architectural change really help, and what does it cost?

variant -> model -> train -> evaluate -> save -> profile -> row -> table / plot.
"""

from .model import SegmentationModel, build_model
from .profile import Profile, profile_model
from .registry import Registry
from .variant import KNOBS, Variant, list_knobs

__all__ = [
    "KNOBS",
    "Profile",
    "Registry",
    "SegmentationModel",
    "Variant",
    "build_model",
    "list_knobs",
    "profile_model",
]
__version__ = "0.1.0"
