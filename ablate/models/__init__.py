"""The model: a variant (the knobs), its encoder and decoder, the assembled model, its profile.

``Variant`` -> ``build_model`` -> ``profile_model``; ``KNOBS`` lists what a variant can change.
"""

from .model import SegmentationModel, build_model
from .profile import Profile, profile_model
from .variant import KNOBS, Variant, list_knobs

__all__ = ["KNOBS", "Profile", "SegmentationModel", "Variant", "build_model", "list_knobs",
           "profile_model"]
