"""Feature visualization (Study 4): synthetic images that maximally excite a unit.

Objectives (Olah et al. 2017, "Feature Visualization"; Yosinski et al. 2015 for class images):

* ``neuron`` - one channel at one spatial position (default: the centre) of a hidden layer;
* ``channel`` - one channel's mean over all positions;
* ``layer`` - DeepDream: the mean squared activation of a whole layer;
* ``class`` - one logit of the final layer (``fc``).

The pieces come from lucent (torch-lucent 0.1.8): the decorrelated Fourier image
parameterization (``param.image``), the regularizing random transforms
(``transform.standard_transforms``: pad, jitter, scale, rotate) and ``objectives``. We drive the
optimization ourselves rather than through ``lucent.optvis.render.render_vis`` because, in 0.1.8,
render_vis (a) registers a forward hook on *every* module and never removes them, so each call
slows the model down for good, (b) silently swallows RuntimeErrors from the forward pass,
(c) upsamples anything smaller than 224 px to 224 px unless ``fixed_image_size`` is set, and
(d) appends ImageNet normalization unless ``preprocess=False``. Our models normalize inside
``forward`` (ARCHITECTURE.md), so the rendered image in [0, 1] goes straight in, at its own size.
Gradients are taken with ``torch.autograd.grad`` with respect to the image parameters only, so
the model's ``.grad`` fields stay untouched.

lucent keeps its tensors on a module-level device (``cuda:0`` when available, else CPU); the
model must be on that device (:func:`lucent_device`).

Renders are cached on disk under a key of (model fingerprint, objective, parameters): the float
image as ``.npy``, a ``.png`` for the book, and a ``.json`` record written last, atomically,
whose presence marks the entry complete.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import eval_mode, model_device

OBJECTIVES: tuple[str, ...] = ("neuron", "channel", "layer", "class")
CACHE_VERSION = 1


def _lucent():
    # lucent imports kornia, whose kornia.jit module calls torch.jit.script at import time; torch
    # 2.x answers with "FutureWarning: `torch.jit.script` is deprecated", naming a file of the
    # installation (a machine path) on the published page. Nothing here scripts anything, so that
    # one warning is silenced where it arises; every other warning still shows.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated",
                                category=FutureWarning)
        from lucent.optvis import objectives, param, transform
        from lucent.optvis.param import spatial
    return objectives, param, transform, spatial


def lucent_device() -> torch.device:
    """The device lucent creates its image parameters on (module-level in lucent)."""
    return torch.device(_lucent()[3].device)



def layer_names(model: nn.Module) -> list[str]:
    """Module names in lucent's convention: the module path joined with ``_``
    (``layer4.1.conv2`` -> ``layer4_1_conv2``)."""
    return [name.replace(".", "_") for name, _ in model.named_modules() if name]


def _find_module(model: nn.Module, layer: str) -> tuple[str, nn.Module]:
    modules = {name.replace(".", "_"): m for name, m in model.named_modules() if name}
    key = layer.replace(".", "_") if isinstance(layer, str) else layer
    if key not in modules:
        raise ValueError(f"layer={layer!r} is not a module of the model; allowed (lucent names): "
                         f"{list(modules)}")
    return key, modules[key]


def model_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the model's class, parameters and *all* buffers (non-persistent ones such as
    the input mean/std change what the model computes, so they belong in the key)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    tensors = dict(model.state_dict())
    tensors.update({f"buffer:{n}": b for n, b in model.named_buffers()})
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class FeatVis:
    """One rendered image and how well it does what it was optimized for."""

    image: np.ndarray  # (H, W, 3) float32 in [0, 1]
    objective: str
    layer: str
    unit: int | None
    value_start: float  # the objective's quantity (e.g. mean channel activation) at the start
    value_end: float  # ... and for the final image, both without the random transforms
    key: str
    from_cache: bool = False
    png_path: str | None = None


def _make_objective(objective: str, layer: str, unit, position):
    """A lucent Objective to *minimize* (negative of the quantity maximized)."""
    objectives = _lucent()[0]
    if objective in ("channel", "class"):
        return objectives.channel(layer, unit)

    def neuron(T):
        acts = T(layer)
        h, w = acts.shape[-2:]
        x, y = position if position is not None else (w // 2, h // 2)
        return -acts[:, unit, y, x].mean()

    def deepdream(T):
        return -(T(layer) ** 2).mean()

    fn = neuron if objective == "neuron" else deepdream
    return objectives.Objective(fn, name=objective, description=f"{objective} {layer} {unit}")


def _probe(model: nn.Module, module: nn.Module, size: int, device) -> torch.Size:
    out = {}
    h = module.register_forward_hook(lambda m, i, o: out.__setitem__("a", o))
    try:
        with torch.no_grad(), eval_mode(model):
            model(torch.full((1, 3, size, size), 0.5, device=device))
    finally:
        h.remove()
    if "a" not in out:
        raise ValueError("the layer is not used in the model's forward pass")
    return out["a"].shape


def _validate(model, objective, layer, unit, position, size, steps, lr):
    if objective not in OBJECTIVES:
        raise ValueError(f"objective={objective!r}; allowed: {list(OBJECTIVES)}")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0 (0 returns the random start), got {steps!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    name, module = _find_module(model, layer)
    dev = lucent_device()
    if model_device(model) != dev:
        raise ValueError(f"lucent renders on {dev}; move the model there first "
                         f"(model.to('{dev}')), it is on {model_device(model)}")
    shape = _probe(model, module, size, dev)
    if objective in ("neuron", "layer") and len(shape) != 4:
        raise ValueError(f"objective={objective!r} needs a convolutional layer with (N, C, h, w) "
                         f"output; {name!r} gives {tuple(shape)}")
    if objective != "layer":
        if not isinstance(unit, (int, np.integer)) or not 0 <= unit < shape[1]:
            raise ValueError(f"unit must be a channel/class index in [0, {shape[1]}) for layer "
                             f"{name!r}, got {unit!r}")
    if objective == "neuron" and position is not None:
        x, y = position
        if not (0 <= x < shape[3] and 0 <= y < shape[2]):
            raise ValueError(f"position (x, y)={position!r} outside the {shape[3]}x{shape[2]} "
                             f"map of {name!r} at size={size}")
    return name, module


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _optimize(model, module, name, objective, unit, position, size, steps, lr, seed,
              transforms, decorrelate, fft, progress):
    """Run the optimization; returns (image (H, W, 3), value_start, value_end)."""
    _, param, transform, _ = _lucent()
    obj = _make_objective(objective, name, unit, position)
    store: dict[str, torch.Tensor] = {}
    hook = module.register_forward_hook(lambda m, i, o: store.__setitem__(name, o))

    def T(layer_name):
        return store[layer_name]

    tf = transform.compose(list(transform.standard_transforms) if transforms else [])
    np_state = np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices), eval_mode(model):
            torch.manual_seed(seed)
            np.random.seed(seed)  # lucent's jitter/scale/rotate draw from numpy's global RNG
            params, image_f = param.image(size, decorrelate=decorrelate, fft=fft)
            opt = torch.optim.Adam(params, lr=lr)

            def value(img):
                with torch.no_grad():
                    model(img)
                    return float(-obj(T))

            start = value(image_f())
            for _ in progress_bar(range(steps), desc=f"featvis {objective} {name}", show=progress):
                opt.zero_grad()
                model(tf(image_f()))
                grads = torch.autograd.grad(obj(T), params)
                for p, g in zip(params, grads):
                    p.grad = g
                opt.step()
            final = image_f().detach()
            end = value(final)
    finally:
        hook.remove()
        np.random.set_state(np_state)
    image = final[0].permute(1, 2, 0).cpu().numpy().astype(np.float32)
    return image, start, end


def visualize(model: nn.Module, objective: str = "channel", layer: str | None = None,
              unit: int | None = None, *, position: tuple[int, int] | None = None,
              size: int = 64, steps: int = 128, lr: float = 0.05, seed: int = 0,
              transforms: bool = True, decorrelate: bool = True, fft: bool = True,
              cache_dir: str | os.PathLike | None = None, progress: bool = False) -> FeatVis:
    """Render an image of ``size`` px maximizing ``objective`` at ``layer`` of ``model``.

    ``layer``: lucent name (``layer4``, ``layer4_1_conv2``, ``fc``; dotted names work too);
    default ``fc`` for ``class`` and ``layer4`` otherwise. ``unit``: channel index (``neuron``,
    ``channel``) or class index (``class``); unused for ``layer``. ``position``: (x, y) on the
    layer's map for ``neuron`` (default the centre). ``transforms`` switches lucent's
    regularizing standard transforms. ``steps=0`` returns the random starting image.
    With ``cache_dir`` a finished render is read back instead of recomputed.
    """
    if layer is None:
        layer = "fc" if objective == "class" else "layer4"
    name, module = _validate(model, objective, layer, unit, position, size, steps, lr)
    unit = None if objective == "layer" else int(unit)
    spec = {"model": model_fingerprint(model), "objective": objective, "layer": name,
            "unit": unit, "position": list(position) if position is not None else None,
            "size": size, "steps": steps, "lr": float(lr), "seed": seed,
            "transforms": bool(transforms), "decorrelate": bool(decorrelate), "fft": bool(fft),
            "version": CACHE_VERSION}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        meta_path = cache / f"{key}.json"
        if meta_path.exists() and (cache / f"{key}.npy").exists():
            meta = json.loads(meta_path.read_text())
            image = np.load(cache / f"{key}.npy")
            return FeatVis(image, objective, name, unit, meta["value_start"], meta["value_end"],
                           key, True, str(cache / f"{key}.png"))
    image, start, end = _optimize(model, module, name, objective, unit, position, size, steps,
                                  lr, seed, transforms, decorrelate, fft, progress)
    result = FeatVis(image, objective, name, unit, start, end, key)
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, image)
        _atomic_write(cache / f"{key}.npy", buf.getvalue())
        _atomic_write(cache / f"{key}.png", _png_bytes(image))
        record = {**spec, "value_start": start, "value_end": end}
        _atomic_write(cache / f"{key}.json", json.dumps(record, indent=1).encode())
        result.png_path = str(cache / f"{key}.png")
    return result


def visualize_units(model: nn.Module, objective: str, layer: str | None, units: Sequence,
                    **kw) -> list[FeatVis]:
    """:func:`visualize` for several units of one layer, with a progress bar over units."""
    progress = kw.pop("progress", True)
    return [visualize(model, objective, layer, u, **kw)
            for u in progress_bar(list(units), desc=f"featvis {objective}", show=progress)]


def plot_featvis(results: Sequence[FeatVis], titles: Sequence[str] | None = None,
                 ncols: int = 6):
    """Figure: a grid of rendered images titled by layer and unit."""
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("results is empty")
    n = len(results)
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig = Figure(figsize=(1.7 * ncols, 1.8 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            r = results[i]
            ax.imshow(np.clip(r.image, 0, 1))
            label = titles[i] if titles is not None else (
                f"{r.layer}" + ("" if r.unit is None else f" #{r.unit}"))
            ax.set_title(label, fontsize=8)
    return fig


def to_dict(result: FeatVis) -> dict:
    """The record without the pixel array (for tables)."""
    d = asdict(result)
    d.pop("image")
    return d
