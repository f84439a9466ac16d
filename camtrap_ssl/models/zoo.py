"""The paper-scale zoo: every representation of SPEC section 3, with where its weights live.

Each entry records the architecture, the published checkpoint (URL, file name, checksum where one
is published), how the checkpoint's keys map to this package's torchvision names, the feature
dimension, the input statistics the model was trained with, and the study's parameter count
(backbone, millions). Nothing here downloads at import time.

Key maps, by publisher:

* torchvision (supervised): already in this layout; the 1000-class ``fc`` is ignored unless
  ``load_head=True``.
* SwAV / DeepCluster-v2 (``swav_keys``): a plain state dict saved from DistributedDataParallel, so
  every key starts with ``module.``; ``projection_head.*`` (MLP) and ``prototypes.*`` (cluster
  centres) are training-only heads and are dropped. The rest is torchvision layout (SwAV's ResNet
  "w2" doubles every channel count, stem included).
* Barlow Twins: backbone only, torchvision layout, no ``fc``: loaded as is.
* SimCLRv2: ``{'resnet': ..., 'head': ...}`` from the SimCLRv2-Pytorch converter; see
  :func:`camtrap_ssl.models.simclrv2.simclrv2_keys` for the layout table.
"""
from __future__ import annotations

from .registry import ModelEntry, WeightSource, identity_keys, register_model
from .resnet import IMAGENET_MEAN, IMAGENET_STD, resnet
from .simclrv2 import simclrv2_keys, simclrv2_resnet

SWAV_DROP_PREFIXES = ("projection_head.", "prototypes.")


def swav_keys(checkpoint: dict) -> dict:
    """SwAV/DeepCluster-v2 checkpoint -> backbone keys: strip ``module.``, drop the two heads."""
    sd = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(sd, dict):
        raise ValueError(f"SwAV checkpoint must be a state dict, got {type(checkpoint).__name__}")
    out = {}
    for key, value in sd.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if not key.startswith(SWAV_DROP_PREFIXES):
            out[key] = value
    return out


def barlowtwins_keys(checkpoint: dict) -> dict:
    """Barlow Twins' ``resnet50.pth`` is the bare torchvision backbone (its ``fc`` was removed)."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"Barlow Twins checkpoint must be a state dict, got {type(checkpoint).__name__}")
    return identity_keys(checkpoint)


TORCHVISION = "https://download.pytorch.org/models/"
FAIR_SWAV = "https://dl.fbaipublicfiles.com/deepcluster/"
BARLOW = ("https://dl.fbaipublicfiles.com/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/"
          "resnet50.pth")
SIMCLR_GS = "gs://simclr-checkpoints/simclrv2/pretrained/"


def simclrv2_instructions(tag: str) -> str:
    """How a user turns the TF checkpoint ``tag`` into the ``.pth`` this package reads."""
    return (
        f"SimCLRv2 {tag} is published only as a TensorFlow checkpoint in Google Cloud Storage "
        f"({SIMCLR_GS}{tag}/), which this package does not fetch. With the community "
        "SimCLRv2-Pytorch converter (github.com/Separius/SimCLRv2-Pytorch; needs TensorFlow): "
        f"(1) `python download.py {tag}` (fetches the checkpoint over HTTPS from "
        f"storage.googleapis.com/simclr-checkpoints/simclrv2/pretrained/{tag}/), or "
        f"`gsutil -m cp -r {SIMCLR_GS}{tag} .`; "
        f"(2) `python convert.py {tag}/model.ckpt-250228` (without --ema), which writes "
        f"`{tag}.pth` holding {{'resnet': ..., 'head': ...}}; "
        "(3) put that file at the cache path named in this message, or pass "
        f"weights_url='file:///absolute/path/{tag}.pth'.")


def _r50_like(name, builder, arch, method, weights, mean, std, feats, params, description):
    """One 224-px entry; its paradigm and family come from the method (registry.METHOD_TABLE)."""
    return register_model(ModelEntry(
        name=name, builder=builder, arch=arch, method=method, weights=weights, mean=mean, std=std,
        input_size=224, num_features=feats, params_m=params, description=description))


# --- supervised (SL), torchvision IMAGENET1K_V1: file names embed the sha256 prefix -----------
_r50_like("supervised_r50", resnet, {"depth": 50}, "supervised",
          WeightSource(TORCHVISION + "resnet50-0676ba61.pth", "resnet50-0676ba61.pth", "0676ba61"),
          IMAGENET_MEAN, IMAGENET_STD, 2048, 24, "torchvision ResNet-50 IMAGENET1K_V1")
_r50_like("supervised_r152", resnet, {"depth": 152}, "supervised",
          WeightSource(TORCHVISION + "resnet152-394f9c45.pth", "resnet152-394f9c45.pth", "394f9c45"),
          IMAGENET_MEAN, IMAGENET_STD, 2048, 58, "torchvision ResNet-152 IMAGENET1K_V1")

# --- SimCLRv2 (SSL, instance): unnormalized [0, 1] inputs --------------------------------------
_SIMCLR_PARAMS = {(50, 1, 0): 24, (50, 1, 1): 34, (50, 2, 0): 94, (50, 2, 1): 140,
                  (152, 1, 0): 58, (152, 1, 1): 89}
for (_depth, _width, _sk), _params in _SIMCLR_PARAMS.items():
    _tag = f"r{_depth}_{_width}x_sk{_sk}"
    _r50_like(f"simclrv2_{_tag}", simclrv2_resnet, {"depth": _depth, "width": _width, "sk": bool(_sk)},
              "simclrv2",
              WeightSource(SIMCLR_GS + _tag, f"{_tag}.pth", None, simclrv2_keys,
                           simclrv2_instructions(_tag)),
              (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 2048 * _width, _params,
              f"SimCLRv2 ResNet-{_depth} {_width}x, selective kernels {'on' if _sk else 'off'}")

# --- SwAV and DeepCluster-v2 (SSL, cluster) ------------------------------------------------------
_r50_like("swav_r50", resnet, {"depth": 50}, "swav",
          WeightSource(FAIR_SWAV + "swav_800ep_pretrain.pth.tar", "swav_800ep_pretrain.pth.tar",
                       None, swav_keys),
          IMAGENET_MEAN, IMAGENET_STD, 2048, 24, "SwAV ResNet-50, 800 epochs")
_r50_like("swav_r50w2", resnet, {"depth": 50, "width": 2}, "swav",
          WeightSource(FAIR_SWAV + "swav_RN50w2_400ep_pretrain.pth.tar",
                       "swav_RN50w2_400ep_pretrain.pth.tar", None, swav_keys),
          IMAGENET_MEAN, IMAGENET_STD, 4096, 94, "SwAV ResNet-50 w2 (every channel doubled), 400 ep")
_r50_like("deepclusterv2_r50", resnet, {"depth": 50}, "deepclusterv2",
          WeightSource(FAIR_SWAV + "deepclusterv2_800ep_pretrain.pth.tar",
                       "deepclusterv2_800ep_pretrain.pth.tar", None, swav_keys),
          IMAGENET_MEAN, IMAGENET_STD, 2048, 24, "DeepCluster-v2 ResNet-50, 800 epochs")

# --- Barlow Twins (SSL, instance) ----------------------------------------------------------------
_r50_like("barlowtwins_r50", resnet, {"depth": 50}, "barlowtwins",
          WeightSource(BARLOW, "barlowtwins_resnet50.pth", None, barlowtwins_keys),
          IMAGENET_MEAN, IMAGENET_STD, 2048, 24, "Barlow Twins ResNet-50, 1000 epochs")

PAPER_MODELS = ("supervised_r50", "supervised_r152", *[f"simclrv2_r{d}_{w}x_sk{s}" for d, w, s in
                _SIMCLR_PARAMS], "swav_r50", "swav_r50w2", "deepclusterv2_r50", "barlowtwins_r50")
