"""Equivariance per ResNet block: does transforming the input transform the features the same way?

The study's framework names equivariance, f(g x) = g' f(x), but measured only invariance of the
final prediction (SPEC section 5, Study 3; section 6 adds the measurement). This module measures it
at the output of each block ``layer1`` .. ``layer4`` for the transformations that have an *exact*
counterpart g' on a feature map, so that any error is the network's and not the comparison's:

* ``flip_lr``: mirror left/right; g' mirrors the feature map's width.
* ``rot90`` / ``rot180`` / ``rot270``: counter-clockwise quarter turns (square inputs); g' turns the
  feature map the same way.
* ``shift_x`` / ``shift_y``: a *cyclic* shift (``torch.roll``) right / down by ``shift_cells``
  cells of the block, i.e. ``shift_cells * stride`` input pixels, where a block's stride is input
  size / feature-map size; g' rolls the feature map by ``shift_cells``. Cyclic, not zero-filled,
  because zero fill destroys content at one border and creates a black band at the other, and the
  only region that would be comparable (the interior beyond the receptive field) is empty at deep
  blocks. A network built from circular-padded convolutions is exactly equivariant to these
  shifts, so any error of a real ResNet measures its zero padding and its strided subsampling.

Strided layers sample a grid that is not symmetric about the image centre (a stride-2 3x3 conv on
an even width looks at columns 0, 2, 4, ... whose mirror images are the odd columns), so even a
network with symmetric filters is not exactly flip- or rotation-equivariant with the natural g';
that offset is part of what this measures.

Error: per image ``||f(g x) - g' f(x)|| / ||f(x)||`` (Frobenius norms over channels and positions),
then mean and standard deviation over images. It is 0 for an equivariant block. For scale, the same
frame reports ``unmoved``: ``||f(g x) - f(x)|| / ||f(x)||``, the error of claiming the features do
not move at all (invariance), and ``shuffled``: ``||f(g x_j) - g' f(x_i)|| / ||f(x_i)||`` for a
different image j of the batch, the error of features that have nothing to do with the image. Both
matter because post-ReLU features share a large image-independent component: the raw error of two
unrelated images is then well below 1, so ``error_ratio`` = error / shuffled (0 = equivariant,
1 = no better than another image's features) is the number that compares across blocks and models.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

BLOCKS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
EQUIVARIANCE_TRANSFORMS: tuple[str, ...] = ("flip_lr", "rot90", "rot180", "rot270",
                                            "shift_x", "shift_y")
_ROT_K = {"rot90": 1, "rot180": 2, "rot270": 3}


def _blocks(model: nn.Module) -> dict[str, nn.Module]:
    out = {}
    for name in BLOCKS:
        block = getattr(model, name, None)
        if not isinstance(block, nn.Module):
            raise ValueError(f"model has no submodule {name!r}; equivariance needs torchvision-"
                             f"style blocks {list(BLOCKS)}")
        out[name] = block
    return out


def block_outputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Outputs of ``layer1`` .. ``layer4`` for a batch, captured with forward hooks in one forward
    pass (the logits are discarded). Runs under ``no_grad``; the caller sets eval mode."""
    captured: dict[str, torch.Tensor] = {}

    def hook(name):
        def fn(_module, _inputs, output):
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                raise ValueError(f"{name} must output a (N, C, h, w) tensor, got "
                                 f"{getattr(output, 'shape', type(output))}")
            captured[name] = output.detach()
        return fn

    handles = [b.register_forward_hook(hook(n)) for n, b in _blocks(model).items()]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in BLOCKS if n not in captured]
    if missing:
        raise ValueError(f"blocks {missing} did not run in the model's forward")
    return captured


def block_strides(input_hw: tuple[int, int], outputs: Mapping[str, torch.Tensor]
                  ) -> dict[str, tuple[float, float]]:
    """Stride of each block (rows, columns) = input size / feature-map size. Fractional values
    mean the map does not tile the input evenly (odd sizes); such blocks get no shift test."""
    h, w = input_hw
    return {n: (h / f.shape[-2], w / f.shape[-1]) for n, f in outputs.items()}


def _act(name: str, x: torch.Tensor, shift: int = 0) -> torch.Tensor:
    """Apply a transformation to (N, C, H, W) images or feature maps; ``shift`` in positions."""
    if name == "flip_lr":
        return torch.flip(x, dims=(-1,))
    if name in _ROT_K:
        return torch.rot90(x, _ROT_K[name], dims=(-2, -1))
    if name == "shift_x":
        return torch.roll(x, shifts=shift, dims=-1)
    if name == "shift_y":
        return torch.roll(x, shifts=shift, dims=-2)
    raise AssertionError(name)


def _nanmean(values) -> float:
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _rel_err(a: torch.Tensor, b: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    num = (a - b).flatten(1).double().norm(dim=1)
    den = ref.flatten(1).double().norm(dim=1)
    # A dead block (all-zero features) has no direction to compare: NaN, left out of the mean.
    return torch.where(den > 0, num / den, torch.full_like(num, float("nan"))).cpu().numpy()


def equivariance_errors(model: nn.Module, images: torch.Tensor,
                        transforms: Sequence[str] = EQUIVARIANCE_TRANSFORMS, *,
                        shift_cells: int = 1, batch_size: int = 32, model_name: str | None = None,
                        progress: bool = False) -> pd.DataFrame:
    """Normalized equivariance error of each block for each transformation (see module docstring).

    Forward passes per batch of images: one untransformed, one per flip/rotation, and one per
    distinct block stride per shift direction (each block is tested with a shift of exactly
    ``shift_cells`` of its own cells; all four blocks are captured with hooks in every pass).

    Returns one row per (block, transform): ``block``, ``depth`` (1..4), ``stride``, ``transform``,
    ``input_shift`` (pixels, shifts only), ``error_mean``, ``error_std``, ``unmoved_mean``,
    ``shuffled_mean`` (needs >= 2 images per batch), ``error_ratio``, ``n_images`` and ``note``
    (why a row is NaN: a feature map too small for the shift, or a stride that does not divide the
    input), plus ``model`` when ``model_name`` is given.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a (N, C, H, W) float tensor in [0, 1], got "
                         f"{getattr(images, 'shape', type(images))}")
    if len(images) == 0:
        raise ValueError("images is empty")
    transforms = list(transforms)
    bad = [t for t in transforms if t not in EQUIVARIANCE_TRANSFORMS]
    if bad or not transforms:
        raise ValueError(f"transforms={bad or transforms}; "
                         f"allowed: {list(EQUIVARIANCE_TRANSFORMS)}")
    H, W = images.shape[-2:]
    if H != W and any(t in _ROT_K for t in transforms):
        raise ValueError(f"rotations need square images, got {H}x{W}; drop "
                         f"{[t for t in transforms if t in _ROT_K]} from transforms")
    if not isinstance(shift_cells, int) or shift_cells < 1:
        raise ValueError(f"shift_cells={shift_cells!r} must be a positive integer")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    _blocks(model)

    device = next(iter(model.parameters()), torch.empty(0)).device
    was_training = model.training
    model.eval()
    errs: dict[tuple[str, str], list] = {}
    unmoved: dict[tuple[str, str], list] = {}
    shuffled: dict[tuple[str, str], list] = {}
    meta: dict[tuple[str, str], dict] = {}
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm
        starts = tqdm(starts, desc="equivariance", unit="batch")
    try:
        for s in starts:
            x = images[s:s + batch_size].to(device)
            perm = torch.roll(torch.arange(len(x)), 1)  # a derangement when the batch has >= 2
            base = block_outputs(model, x)
            strides = block_strides((H, W), base)
            for t in transforms:
                if t.startswith("shift"):
                    axis = 1 if t == "shift_x" else 0
                    size = (H, W)[axis]
                    # group blocks by their stride along the axis: one forward per distinct stride
                    groups: dict[int, list[str]] = {}
                    for b in BLOCKS:
                        st = strides[b][axis]
                        fsize = base[b].shape[-1 if axis else -2]
                        note = None
                        if not float(st).is_integer():
                            note = f"stride {st:.3g} does not divide the input"
                        elif shift_cells % fsize == 0:
                            note = (f"feature map of {fsize} cells: a {shift_cells}-cell cyclic "
                                    f"shift is the identity")
                        meta[(b, t)] = {"stride": st, "input_shift": shift_cells * st
                                        if note is None else float("nan"), "note": note}
                        if note is None:
                            groups.setdefault(int(st), []).append(b)
                    for st, names in groups.items():
                        pixels = shift_cells * st
                        if pixels % size == 0:  # cannot happen once fsize check passed
                            continue
                        moved = block_outputs(model, _act(t, x, pixels))
                        for b in names:
                            errs.setdefault((b, t), []).extend(
                                _rel_err(moved[b], _act(t, base[b], shift_cells), base[b]))
                            unmoved.setdefault((b, t), []).extend(
                                _rel_err(moved[b], base[b], base[b]))
                            if len(x) > 1:
                                shuffled.setdefault((b, t), []).extend(_rel_err(
                                    moved[b][perm], _act(t, base[b], shift_cells), base[b]))
                else:
                    moved = block_outputs(model, _act(t, x))
                    for b in BLOCKS:
                        st = strides[b][1]
                        meta[(b, t)] = {"stride": st, "input_shift": float("nan"), "note": None}
                        if moved[b].shape != _act(t, base[b]).shape:
                            meta[(b, t)]["note"] = "feature map not square"
                            continue
                        errs.setdefault((b, t), []).extend(
                            _rel_err(moved[b], _act(t, base[b]), base[b]))
                        unmoved.setdefault((b, t), []).extend(
                            _rel_err(moved[b], base[b], base[b]))
                        if len(x) > 1:
                            shuffled.setdefault((b, t), []).extend(
                                _rel_err(moved[b][perm], _act(t, base[b]), base[b]))
    finally:
        model.train(was_training)

    rows = []
    for t in transforms:
        for depth, b in enumerate(BLOCKS, start=1):
            e = np.asarray(errs.get((b, t), []), dtype=float)
            ok = e[~np.isnan(e)]
            m = meta.get((b, t), {})
            unmoved_mean = _nanmean(unmoved.get((b, t), []))
            shuffled_mean = _nanmean(shuffled.get((b, t), []))
            error_mean = float(ok.mean()) if ok.size else float("nan")
            rows.append({
                "block": b, "depth": depth, "stride": m.get("stride", float("nan")),
                "transform": t, "input_shift": m.get("input_shift", float("nan")),
                "error_mean": error_mean,
                "error_std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                "unmoved_mean": unmoved_mean, "shuffled_mean": shuffled_mean,
                "error_ratio": error_mean / shuffled_mean if shuffled_mean > 0 else float("nan"),
                "n_images": int(ok.size),
                "note": m.get("note"),
            })
    df = pd.DataFrame(rows)
    if model_name is not None:
        df.insert(0, "model", model_name)
    return df


def plot_equivariance(dfs_by_model, transforms: Sequence[str] | None = None, *,
                      y: str = "error_mean", show_baseline: bool = False,
                      panel_size=(3.0, 2.6)):
    """Equivariance error against depth: one panel per transformation, one line per model.

    ``y="error_mean"`` (default) plots the normalized error with error bars of one standard
    deviation over images; ``show_baseline`` then adds each model's ``shuffled`` error dashed, the
    level of "no equivariance at all". ``y="error_ratio"`` plots error / shuffled, which puts all
    blocks and models on one scale (0 = equivariant, 1 = chance).

    ``dfs_by_model``: dict model name -> :func:`equivariance_errors` frame, or one frame with a
    ``model`` column. Returns a :class:`matplotlib.figure.Figure` (made without pyplot).
    """
    from matplotlib.figure import Figure

    if isinstance(dfs_by_model, Mapping):
        if not dfs_by_model:
            raise ValueError("no models given (empty dict)")
        df = pd.concat([d.drop(columns="model", errors="ignore").assign(model=name)
                        for name, d in dfs_by_model.items()], ignore_index=True)
    elif isinstance(dfs_by_model, pd.DataFrame):
        df = dfs_by_model if "model" in dfs_by_model else dfs_by_model.assign(model="model")
    else:
        raise ValueError(f"expected a dict model -> DataFrame or a DataFrame, got "
                         f"{type(dfs_by_model).__name__}")
    if y not in ("error_mean", "error_ratio"):
        raise ValueError(f"y={y!r}; allowed: 'error_mean', 'error_ratio'")
    missing = {"block", "depth", "transform", y, "error_std"} - set(df.columns)
    if missing:
        raise ValueError(f"frame lacks column(s) {sorted(missing)}; make it with "
                         f"equivariance_errors")
    present = list(dict.fromkeys(df["transform"]))
    transforms = present if transforms is None else list(transforms)
    unknown = [t for t in transforms if t not in present]
    if unknown:
        raise ValueError(f"transforms {unknown} not in the frame; present: {present}")
    models = list(dict.fromkeys(df["model"]))
    ncols = min(len(transforms), 3)
    nrows = math.ceil(len(transforms) / ncols)
    fig = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows + 0.5),
                 layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=True, squeeze=False).ravel()
    for ax, t in zip(axes, transforms):
        for i, m in enumerate(models):
            cur = df[(df["model"] == m) & (df["transform"] == t)].sort_values("depth")
            if y == "error_mean":
                ax.errorbar(cur["depth"], cur[y], yerr=cur["error_std"].fillna(0),
                            color=f"C{i}", marker="o", ms=3, capsize=2, label=m)
            else:
                ax.plot(cur["depth"], cur[y], color=f"C{i}", marker="o", ms=3, label=m)
            if show_baseline and y == "error_mean" and "shuffled_mean" in cur:
                ax.plot(cur["depth"], cur["shuffled_mean"], color=f"C{i}", ls="--", lw=0.8,
                        label=f"{m} (shuffled)")
        ax.set_title(t)
        ax.set_xticks(range(1, len(BLOCKS) + 1))
        ax.set_xticklabels(BLOCKS, fontsize=8)
        ax.grid(alpha=0.3)
    # shared y axis from 0 to the highest point drawn (set per panel it would clip later panels)
    shown = df[df["transform"].isin(transforms)]
    top = (shown[y] + (shown["error_std"].fillna(0) if y == "error_mean" else 0)).max()
    if show_baseline and y == "error_mean" and "shuffled_mean" in shown:
        top = max(top, shown["shuffled_mean"].max())
    if np.isfinite(top) and top > 0:
        axes[0].set_ylim(0, 1.05 * top)
    for ax in axes[len(transforms):]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("||f(gx) - g'f(x)|| / ||f(x)||" if y == "error_mean"
                      else "error / shuffled error", fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    order = sorted(range(len(names)), key=lambda i: ("(shuffled)" in names[i], i))
    handles, names = [handles[i] for i in order], [names[i] for i in order]
    if handles:
        fig.legend(handles, names, loc="outside upper right", ncols=min(len(names), 4),
                   frameon=False)
    return fig
