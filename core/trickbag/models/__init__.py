"""Model registry: ``MODELS`` maps a name to ``builder(info, **options)``; ``build_model`` checks options.

Importing this package registers the built-in models (the imports below are for that side effect).
"""
from . import airbench, cifar_resnet, simple, torchvision_resnet  # noqa: F401  (register the built-ins)
from .cifar_resnet import RESIDUAL_BLOCKS, CifarBasicBlock, CifarResNet
from .registry import MODELS, build_model, check_range, register_model

__all__ = ["MODELS", "RESIDUAL_BLOCKS", "CifarBasicBlock", "CifarResNet", "build_model", "check_range", "register_model"]
