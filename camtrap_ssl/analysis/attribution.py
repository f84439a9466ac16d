"""Saliency maps for Study 4: which pixels decide a model's prediction.

Each method is a small class in the style of captum's ``captum.attr``: built from the model and
the method's own settings, which its ``__init__`` checks (a ValueError naming the parameter and
the allowed values), then called as ``.attribute(images, target=None)``:

* :class:`Saliency` ``(model, abs=True)`` - plain input gradients (Simonyan et al. 2014);
* :class:`DeconvNet` ``(model)`` and :class:`GuidedBackprop` ``(model)`` - gradients with the
  ReLU backward pass replaced (Zeiler & Fergus 2014; Springenberg et al. 2015);
* :class:`GradCAM` ``(model, layer="layer4")`` and :class:`GuidedGradCAM` ``(model,
  layer="layer4")`` (Selvaraju et al. 2017);
* :class:`ScoreCAM` ``(model, layer="layer4", batch_size=32, variant="authors",
  progress=False)`` (Wang et al. 2020), which captum lacks, implemented here and batched over
  channels, with a deliberately naive :func:`scorecam_reference` that the tests and
  ``benchmarks/bench_scorecam.py`` compare against.

The first five run through captum (imported when a map is computed, not on import). ``METHODS``
maps each method's name (``"saliency"``, ``"deconvnet"``, ``"guided_backprop"``, ``"gradcam"``,
``"guided_gradcam"``, ``"scorecam"``) to its class, and :func:`attribute` builds the class from
the name, so a notebook can loop over models and methods with one call.

Models follow ARCHITECTURE.md: they take float images in [0, 1] and normalize inside ``forward``,
so every map here is a map over *pixels* of the image the reader sees.

captum and reused ReLU modules: torchvision's BasicBlock calls one ``nn.ReLU(inplace=True)``
module twice. captum (0.9) hooks each ReLU with a forward pre-hook that clones the input and tensor
hooks on input and output; during the backward pass the second call of a block is always finished
before the first call receives its gradient, so the shared per-module gradient slot is never read
stale. ``tests/test_attribution.py`` checks this against an independent guided-backprop and
deconvnet written with a custom autograd function, so no ReLU swapping is needed.
"""
from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import check_images, eval_mode, get_layer, model_device

SCORECAM_VARIANTS: tuple[str, ...] = ("authors", "paper", "pytorch_grad_cam")
"""Score-CAM's published variants (see :class:`ScoreCAM`); the first is the default."""
_EPS = 1e-12


def resolve_targets(model: nn.Module, images: Tensor, target) -> Tensor:
    """Targets as a LongTensor (N,): ``None`` means each image's predicted class."""
    n = images.shape[0]
    if target is None:
        with torch.no_grad(), eval_mode(model):
            return model(images).argmax(1)
    if isinstance(target, (int, np.integer)):
        return torch.full((n,), int(target), dtype=torch.long, device=images.device)
    t = torch.as_tensor(target, dtype=torch.long, device=images.device).flatten()
    if t.numel() != n:
        raise ValueError(f"target has {t.numel()} entries for {n} images; give one per image, "
                         "a single int, or None for the predicted class")
    return t


def _check_target_range(targets: Tensor, n_classes: int) -> None:
    if targets.numel() and (targets.min() < 0 or targets.max() >= n_classes):
        raise ValueError(f"target {targets.tolist()} out of range for a model with "
                         f"{n_classes} outputs")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name}={value!r}; allowed: True or False")


def _warn_blank(name: str, maps: Tensor) -> None:
    n_blank = int((maps.flatten(1).abs().amax(1) <= 0).sum())
    if n_blank:  # e.g. Guided Grad-CAM where Grad-CAM's ReLU left nothing
        warnings.warn(f"{name}: {n_blank} of {len(maps)} maps are blank (all zero)",
                      stacklevel=3)


# --------------------------------------------------------------------------------- the methods
class Attribution:
    """A saliency method bound to one model: ``Method(model, ...).attribute(images, target)``.

    ``images``: (N, 3, H, W) floats in [0, 1]; ``target``: an int, one int per image, or
    ``None`` (each image's predicted class). Maps come back at the input's resolution on the
    images' device, (N, 3, H, W) for the gradient methods and (N, 1, H, W) for the CAM methods,
    and blank (all-zero) maps are warned about with their count. The model is put in eval mode
    for the call and restored afterwards.
    """

    name: str = ""

    def __init__(self, model: nn.Module):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.model = model

    def attribute(self, images: Tensor, target=None) -> Tensor:
        check_images(images)
        x = images.detach().to(model_device(self.model))
        targets = resolve_targets(self.model, x, target)
        with eval_mode(self.model), warnings.catch_warnings():
            # captum announces its temporary ReLU hooks on every call; they are removed afterwards
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            out = self._captum(x.clone().requires_grad_(True), targets).detach()
        _warn_blank(self.name, out)
        return out.to(images.device)

    def _captum(self, x: Tensor, targets: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.model).__name__})"


class Saliency(Attribution):
    """Input gradients of the target logit (Simonyan et al. 2014); ``abs=True`` takes their
    magnitude, as the paper does, ``abs=False`` keeps the sign."""

    name = "saliency"

    def __init__(self, model: nn.Module, abs: bool = True):  # noqa: A002 - captum's name
        super().__init__(model)
        _check_bool("abs", abs)
        self.abs = abs

    def _captum(self, x, targets):
        from captum.attr import Saliency as CaptumSaliency

        return CaptumSaliency(self.model).attribute(x, target=targets, abs=self.abs)


class DeconvNet(Attribution):
    """Gradients with ReLUs passing only positive *gradients* (Zeiler & Fergus 2014)."""

    name = "deconvnet"

    def _captum(self, x, targets):
        from captum.attr import Deconvolution

        return Deconvolution(self.model).attribute(x, target=targets)


class GuidedBackprop(Attribution):
    """Gradients with ReLUs passing positive gradients at positive inputs only
    (Springenberg et al. 2015)."""

    name = "guided_backprop"

    def _captum(self, x, targets):
        from captum.attr import GuidedBackprop as CaptumGuidedBackprop

        return CaptumGuidedBackprop(self.model).attribute(x, target=targets)


class LayerMethod(Attribution):
    """A method that reads the activations of one convolutional block: ``layer`` is its
    torchvision name (``layer1`` ... ``layer4``, dotted names such as ``layer4.1.conv2``) or the
    module itself; the default ``layer4`` is the final block."""

    def __init__(self, model: nn.Module, layer: str | nn.Module = "layer4"):
        super().__init__(model)
        self.layer = get_layer(model, layer)


class GradCAM(LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): ReLU of the gradient-weighted activations of ``layer``,
    upsampled bilinearly to the image, (N, 1, H, W)."""

    name = "gradcam"

    def _captum(self, x, targets):
        from captum.attr import LayerAttribution, LayerGradCam

        cam = LayerGradCam(self.model, self.layer).attribute(x, target=targets,
                                                             relu_attributions=True)
        return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")


class GuidedGradCAM(LayerMethod):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop times the upsampled Grad-CAM of
    ``layer``, (N, 3, H, W)."""

    name = "guided_gradcam"

    def _captum(self, x, targets):
        from captum.attr import GuidedGradCam

        return GuidedGradCam(self.model, self.layer).attribute(x, target=targets,
                                                               interpolate_mode="bilinear")


# --------------------------------------------------------------------------------- Score-CAM
def _layer_activations(model: nn.Module, module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """One forward pass returning (activations of ``module``, logits)."""
    store: list[Tensor] = []
    handle = module.register_forward_hook(lambda m, i, o: store.append(o.detach()))
    try:
        logits = model(x)
    finally:
        handle.remove()
    if len(store) != 1 or store[0].dim() != 4:
        raise ValueError("the Score-CAM layer must be called once per forward pass and output "
                         "(N, C, h, w) feature maps")
    return store[0], logits


def _upsample(a: Tensor, size) -> Tensor:
    return F.interpolate(a, size=tuple(size), mode="bilinear", align_corners=False)


def _finish_cam(cam_small: Tensor, size) -> Tensor:
    """ReLU, upsample (h, w) -> image size, min-max normalize to [0, 1] (all-zero stays zero)."""
    cam = _upsample(F.relu(cam_small)[None, None], size)[0]
    lo, hi = cam.min(), cam.max()
    return (cam - lo) / (hi - lo) if hi - lo > _EPS else torch.zeros_like(cam)


def _check_scorecam_args(variant: str, batch_size: int) -> None:
    if variant not in SCORECAM_VARIANTS:
        raise ValueError(f"variant={variant!r}; allowed: {list(SCORECAM_VARIANTS)}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def _fill(model: nn.Module, x: Tensor, variant: str) -> Tensor:
    """What a mask of 0 leaves in pixel space: the model's normalisation mean for ``authors``
    (masking the *normalised* tensor, as their code does, is masking toward the mean colour in
    pixel space), black otherwise."""
    mean = getattr(model, "mean", None)
    if variant == "authors" and isinstance(mean, Tensor):
        return mean.reshape(1, -1, 1, 1).to(x)
    return torch.zeros(1, x.shape[1], 1, 1, device=x.device, dtype=x.dtype)


def _masked(x: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    return fill + (x - fill) * mask


def _weights(scores: Tensor, variant: str, base: float) -> Tensor:
    """Channel weights from the masked copies' target scores (probabilities or logits)."""
    if variant == "pytorch_grad_cam":
        return F.softmax(scores, dim=0)
    return scores - base if variant == "paper" else scores


class ScoreCAM(LayerMethod):
    """Score-CAM (Wang et al., CVPR-W 2020) maps (N, 1, H, W) in [0, 1], batched over channels.

    For each channel k of ``layer``'s activation A_k: upsample to the image size and min-max
    scale to [0, 1], giving a soft mask H_k; score the masked image; CAM = ReLU(sum_k w_k A_k)
    at the layer's resolution, upsampled bilinearly and min-max normalised. Three variants:

    * ``"authors"`` (default): the authors' public code: mask the *normalised* input (in pixel
      space: toward the model's mean colour) and take w_k = softmax probability of the target,
      nothing subtracted. With post-ReLU activations every w_k A_k >= 0, so the map cannot be
      zeroed by the final ReLU.
    * ``"paper"``: the paper's "increase of confidence" w_k = p(X * H_k) - p(X_b) with X_b the
      black image, masking pixels with black. When the black image scores the target higher
      than every masked copy, every weight is negative and the ReLU blanks the whole map (2 of
      36 real Serengeti night frames for the fine-tuned supervised demo model, most images of
      random models). Kept for comparison, never as a default.
    * ``"pytorch_grad_cam"``: pytorch-grad-cam's ``ScoreCAM``: black pixel masks, w_k = softmax
      *over channels* of the target *logits*. The tests check it against that library.

    Blank maps are warned about (count in the message) wherever they occur. Channels whose
    activation is constant carry no spatial information and no valid mask: weight 0, not run
    through the network. Masked copies go through ``batch_size`` at a time
    (``benchmarks/bench_scorecam.py``); ``progress`` shows a bar over the images. Targets out of
    the model's range are refused.
    """

    name = "scorecam"

    def __init__(self, model: nn.Module, layer: str | nn.Module = "layer4", batch_size: int = 32,
                 variant: str = "authors", progress: bool = False):
        _check_scorecam_args(variant, batch_size)
        _check_bool("progress", progress)
        super().__init__(model, layer)
        self.batch_size, self.variant, self.progress = batch_size, variant, progress

    def attribute(self, images: Tensor, target=None) -> Tensor:
        check_images(images)
        model, module, variant, batch_size = self.model, self.layer, self.variant, self.batch_size
        device = model_device(model)
        x_all = images.detach().to(device)
        size = x_all.shape[-2:]
        cams = []
        with eval_mode(model), torch.no_grad():
            acts, logits = _layer_activations(model, module, x_all)
            targets = resolve_targets(model, x_all, target)
            _check_target_range(targets, logits.shape[1])
            fill = _fill(model, x_all, variant)
            blank_probs = F.softmax(model(torch.zeros_like(x_all[:1])), dim=1)[0]
            for n in progress_bar(range(x_all.shape[0]), desc="Score-CAM", show=self.progress):
                a, t = acts[n], int(targets[n])
                flat = a.flatten(1)
                lo, hi = flat.min(1).values, flat.max(1).values
                live = torch.nonzero(hi - lo > _EPS).flatten()
                scores = torch.zeros(live.numel(), device=device)
                for start in range(0, live.numel(), batch_size):
                    idx = live[start:start + batch_size]
                    up = _upsample(a[idx][:, None], size)  # (B, 1, H, W)
                    mask = (up - lo[idx, None, None, None]) / (hi - lo)[idx, None, None, None]
                    out = model(_masked(x_all[n:n + 1], mask, fill))
                    scores[start:start + idx.numel()] = (out[:, t] if variant == "pytorch_grad_cam"
                                                         else F.softmax(out, dim=1)[:, t])
                weights = torch.zeros(a.shape[0], device=device)
                if live.numel():
                    weights[live] = _weights(scores, variant, float(blank_probs[t]))
                cams.append(_finish_cam((weights[:, None, None] * a).sum(0), size))
        out = torch.stack(cams)
        _warn_blank(f"Score-CAM ({variant})", out)
        return out.to(images.device)

    def __repr__(self) -> str:
        return (f"ScoreCAM({type(self.model).__name__}, batch_size={self.batch_size}, "
                f"variant={self.variant!r})")


def scorecam(model: nn.Module, images: Tensor, target=None, layer: str | nn.Module = "layer4",
             batch_size: int = 32, variant: str = "authors", progress: bool = False) -> Tensor:
    """:class:`ScoreCAM` in one call (the benchmarks and tests time and check it this way)."""
    return ScoreCAM(model, layer, batch_size=batch_size, variant=variant,
                    progress=progress).attribute(images, target)


METHODS = MappingProxyType({cls.name: cls for cls in (
    Saliency, DeconvNet, GuidedBackprop, GradCAM, GuidedGradCAM, ScoreCAM)})
"""Method name -> class, in the order the study shows them (read-only)."""
LAYER_METHODS: tuple[str, ...] = tuple(n for n, c in METHODS.items() if issubclass(c, LayerMethod))
"""The methods that read a convolutional layer (they take ``layer``)."""


def attribute(model: nn.Module, images: Tensor, target=None, method: str = "saliency",
              layer: str | nn.Module | None = None, **kw) -> Tensor:
    """``METHODS[method](model, layer=layer, **kw).attribute(images, target)``: the maps of
    ``model``'s ``target`` logit for ``images`` (N, 3, H, W) in [0, 1] (see :class:`Attribution`).

    ``layer`` is passed to the methods that read one (``LAYER_METHODS``; default ``layer4``) and
    ignored by the others, so one call serves every method. Other keywords go to the method's
    class, which checks them: ``abs`` for ``saliency``; ``batch_size``, ``variant``,
    ``progress`` for ``scorecam``. Reduce 3-channel maps with :func:`to_2d` and scale with
    :func:`normalize_map` for display.
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not known; allowed: {list(METHODS)}")
    cls = METHODS[method]
    allowed = [p for p in inspect.signature(cls).parameters if p not in ("model", "layer")]
    bad = sorted(set(kw) - set(allowed))
    if bad:
        raise ValueError(f"unexpected keyword(s) {bad} for method={method!r} ({cls.__name__}); "
                         f"allowed: {allowed}")
    if layer is not None and issubclass(cls, LayerMethod):
        kw["layer"] = layer
    return cls(model, **kw).attribute(images, target)


def scorecam_reference(model: nn.Module, images: Tensor, target=None,
                       layer: str | nn.Module = "layer4", variant: str = "authors") -> Tensor:
    """Score-CAM the slow, obvious way: one forward pass per image and channel.

    Written independently of :func:`scorecam` (its own hook, per-channel masks, a Python loop
    over every channel) so that the batched version can be checked against it and timed.
    """
    _check_scorecam_args(variant, 1)
    check_images(images)
    module = get_layer(model, layer)
    device = model_device(model)
    out = []
    with eval_mode(model), torch.no_grad():
        for n in range(images.shape[0]):
            x = images[n:n + 1].to(device)
            feats = {}
            h = module.register_forward_hook(lambda m, i, o: feats.__setitem__("a", o))
            logits = model(x)
            h.remove()
            a = feats["a"][0]
            if target is None:
                t = int(logits.argmax(1))
            elif isinstance(target, (int, np.integer)):
                t = int(target)
            else:
                t = int(torch.as_tensor(target).flatten()[n])
            mean = getattr(model, "mean", None)
            fill = mean.reshape(1, -1, 1, 1) if variant == "authors" and isinstance(
                mean, Tensor) else torch.zeros(1, 3, 1, 1, device=device)
            blank = F.softmax(model(torch.zeros_like(x)), dim=1)[0, t].item()
            scores, channels = [], []
            for k in range(a.shape[0]):
                if a[k].max() - a[k].min() <= _EPS:
                    continue
                m = F.interpolate(a[k][None, None], size=x.shape[-2:], mode="bilinear",
                                  align_corners=False)
                m = (m - a[k].min()) / (a[k].max() - a[k].min())
                o = model(fill + (x - fill) * m)[0]
                scores.append(o[t].item() if variant == "pytorch_grad_cam"
                              else F.softmax(o, dim=0)[t].item())
                channels.append(k)
            w = torch.tensor(scores)
            w = (torch.softmax(w, 0) if variant == "pytorch_grad_cam"
                 else w - blank if variant == "paper" else w)
            cam = torch.zeros_like(a[0])
            for wk, k in zip(w.tolist(), channels):
                cam = cam + wk * a[k]
            cam = F.interpolate(cam.clamp(min=0)[None, None], size=x.shape[-2:],
                                mode="bilinear", align_corners=False)[0]
            span = cam.max() - cam.min()
            out.append((cam - cam.min()) / span if span > _EPS else torch.zeros_like(cam))
    return torch.stack(out).to(images.device)


# --------------------------------------------------------------------------------- display
REDUCTIONS: tuple[str, ...] = ("abs_max", "abs_sum", "sum", "positive_sum")


def to_2d(maps: Tensor, reduce: str = "abs_max") -> Tensor:
    """Collapse colour channels of (N, C, H, W) maps to (N, 1, H, W).

    ``abs_max`` is Simonyan et al.'s choice for gradient maps (largest magnitude over RGB);
    ``positive_sum`` keeps only evidence *for* the class. One-channel maps pass through.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r}; allowed: {list(REDUCTIONS)}")
    if maps.dim() == 3:
        maps = maps[:, None]
    if maps.dim() != 4:
        raise ValueError(f"maps must be (N, C, H, W) or (N, H, W), got {tuple(maps.shape)}")
    if maps.shape[1] == 1:
        return maps
    if reduce == "abs_max":
        return maps.abs().amax(1, keepdim=True)
    if reduce == "abs_sum":
        return maps.abs().sum(1, keepdim=True)
    if reduce == "sum":
        return maps.sum(1, keepdim=True)
    return maps.clamp(min=0).sum(1, keepdim=True)


def normalize_map(maps: Tensor, reduce: str = "abs_max") -> Tensor:
    """(N, 1, H, W) maps scaled per image to [0, 1] (constant maps become 0), for display."""
    m = to_2d(maps.detach().float(), reduce)
    lo = m.amin(dim=(1, 2, 3), keepdim=True)
    hi = m.amax(dim=(1, 2, 3), keepdim=True)
    span = hi - lo
    return torch.where(span > _EPS, (m - lo) / span.clamp(min=_EPS), torch.zeros_like(m))


def to_hwc(image) -> np.ndarray:
    a = image.detach().cpu().numpy() if isinstance(image, Tensor) else np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    return np.clip(a.astype(np.float32), 0, 1)


def overlay(image, heatmap, ax=None, alpha: float = 0.5, cmap: str = "jet",
            title: str | None = None):
    """Draw ``heatmap`` (H, W) or (1, H, W), normalized, over ``image`` (3, H, W) in [0, 1].

    Returns the matplotlib Axes (a new Figure's when ``ax`` is None) so callers compose grids.
    """
    from matplotlib.figure import Figure

    if ax is None:
        ax = Figure(figsize=(3, 3)).add_subplot()
    h = heatmap.detach().cpu() if isinstance(heatmap, Tensor) else torch.as_tensor(heatmap)
    h = normalize_map(h.reshape(1, 1, *h.shape[-2:]).float())[0, 0].numpy()
    ax.imshow(to_hwc(image))
    ax.imshow(h, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def attribution_grid(images: Tensor, maps_by_name: dict[str, Tensor],
                     titles: Sequence[str] | None = None, reduce: str = "abs_max"):
    """Figure: one row per image, the image then one overlay per entry of ``maps_by_name``."""
    from matplotlib.figure import Figure

    n, cols = images.shape[0], len(maps_by_name) + 1
    fig = Figure(figsize=(1.8 * cols, 1.8 * n), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, cols, squeeze=False))
    for i in range(n):
        axes[i, 0].imshow(to_hwc(images[i]))
        axes[i, 0].set_axis_off()
        if titles is not None:
            axes[i, 0].set_title(titles[i], fontsize=8)
        for j, (name, maps) in enumerate(maps_by_name.items(), start=1):
            overlay(images[i], to_2d(maps[i:i + 1], reduce)[0], ax=axes[i, j],
                    title=name if i == 0 else None)
    return fig
