"""The few model helpers every analysis needs, in one place.

The analyses (invariance, equivariance, filters, feature visualisation, attribution, explorers)
each grew their own copies of "which device is this model on", "run in eval mode and put the mode
back", "find the ResNet blocks", "find a layer by name" and "are these images (N, 3, H, W) in
[0, 1]", with slightly different rules. One copy here means one rule: a model with no parameters is
on the CPU; the caller's training mode survives an analysis; blocks are torchvision's
``layer1``..``layer4``; and images are float (N, 3, H, W) tensors in [0, 1] (ARCHITECTURE.md:
models normalise inside ``forward``, so an already-normalised batch is a caller's mistake that
would otherwise pass silently).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import Tensor, nn

BLOCKS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
"""The four residual stages every analysis addresses (torchvision's names)."""

_RANGE_TOL = 1e-6


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer; CPU for a model with neither."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module):
    """Run ``model`` in eval mode and restore its previous mode afterwards, even on error.

    An analysis must not update BatchNorm statistics or sample dropout masks, and the caller's
    training state should survive it.
    """
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def blocks(model: nn.Module) -> dict[str, nn.Module]:
    """The four residual stages ``layer1``..``layer4`` of ``model``, in order, as a dict."""
    missing = [n for n in BLOCKS if not isinstance(getattr(model, n, None), nn.Module)]
    if missing:
        raise ValueError(f"{type(model).__name__} has no ResNet stages {missing}; "
                         f"expected torchvision names {list(BLOCKS)}")
    return {n: getattr(model, n) for n in BLOCKS}


def get_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule named ``layer`` (dotted torchvision name, e.g. ``layer4`` or
    ``layer4.1.conv2``), or ``layer`` itself when a module is given."""
    if isinstance(layer, nn.Module):
        return layer
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or an nn.Module, got {type(layer)}")
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"layer={layer!r} is not a submodule of the model; top-level modules: {names} "
            "(dotted names such as 'layer4.1.conv2' also work)"
        ) from None


def check_images(images, name: str = "images", channels: int | None = 3) -> Tensor:
    """Raise a one-line ValueError unless ``images`` is a float (N, C, H, W) tensor in [0, 1]
    with ``channels`` colour channels (None: any number); return it unchanged.

    The range rule catches batches that were normalised outside the model, which every model here
    does itself; the tolerance admits rounding of resampled images.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a float tensor (N, {channels or 'C'}, H, W) in [0, 1], "
                         f"got {shape}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (N, {channels}, H, W), got "
                         f"{tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point in [0, 1], got dtype {images.dtype}")
    if images.numel() and (images.min() < -_RANGE_TOL or images.max() > 1 + _RANGE_TOL):
        raise ValueError(f"{name} must lie in [0, 1] (models normalise inside forward), got "
                         f"[{float(images.min()):.3g}, {float(images.max()):.3g}]")
    return images


PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp32")
"""Arithmetic for training and evaluation: ``auto`` is bf16 where the hardware has it natively."""


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU multiplies bf16 in hardware (Intel AMX or AVX512-BF16 flags).

    ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` also says yes on plain AVX512, where oneDNN
    emulates bf16 and autocast is slower than fp32, so the flags are read instead. A machine
    without ``/proc/cpuinfo`` (macOS, Windows) counts as without.
    """
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``bf16`` or ``fp32`` for ``precision`` on ``device``; ``auto`` picks bf16 on CUDA and on
    CPUs with native bf16 (measured 1.6-2.1x on the demo's fine-tuning step with AMX,
    ``benchmarks/bench_finetune.py``), fp32 elsewhere."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; allowed: {list(PRECISIONS)}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str):
    """The autocast context for a resolved ``precision`` (``bf16`` or ``fp32``) on ``device``."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
