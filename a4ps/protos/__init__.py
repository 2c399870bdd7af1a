"""Protos (live persona objects) and the living image that persists them (organ 3)."""

from a4ps.protos.image import ImageError, ImageSaveError, LivingImage
from a4ps.protos.proto import Proto, ProtoManager

__all__ = ["ImageError", "ImageSaveError", "LivingImage", "Proto", "ProtoManager"]
