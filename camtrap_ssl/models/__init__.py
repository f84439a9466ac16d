"""Backbones of the study: one ResNet family, a timm-style registry and the paper-scale zoo.

``create_model(name, pretrained=False, num_classes=None)`` is the single entry point; every model
takes [0, 1] images and normalizes them itself (ARCHITECTURE.md). ``list_models()`` shows the
names: plain ``resnet{10,18,34,50,101,152}``, the embedded demo architectures ``resnet18_w025``
and ``resnet10_w0125``, and the paper-scale zoo of SPEC section 3 (``zoo.PAPER_MODELS``).
"""
from . import zoo  # noqa: F401  (registers the paper-scale entries)
from .registry import (
                       ModelEntry,
                       WeightSource,
                       create_model,
                       get_entry,
                       list_models,
                       load_backbone_state,
                       register_model,
                       unregister_model,
)
from .resnet import IMAGENET_MEAN, IMAGENET_STD, ResNet, count_params, resnet
from .simclrv2 import simclrv2_resnet
from .utils import BLOCKS, blocks, check_images, eval_mode, get_layer, model_device
from .weights import (
                       ChecksumError,
                       UnsafeCheckpointError,
                       WeightsUnavailableError,
                       load_checkpoint,
                       weights_dir,
)
from .zoo import PAPER_MODELS

__all__ = ["ModelEntry", "WeightSource", "create_model", "get_entry", "list_models",
           "load_backbone_state", "register_model", "unregister_model", "IMAGENET_MEAN",
           "IMAGENET_STD", "ResNet", "blocks", "count_params", "resnet", "simclrv2_resnet",
           "ChecksumError", "UnsafeCheckpointError", "WeightsUnavailableError", "load_checkpoint",
           "weights_dir", "PAPER_MODELS", "BLOCKS", "check_images", "eval_mode", "get_layer",
           "model_device"]
