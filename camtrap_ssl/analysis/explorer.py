"""Interactive explorers for Study 4: pick an image, a method or block, and compare models.

Each panel shows one image and, side by side, every model's map for it, because the study's
question is a comparison (does SSL look at the animal where SL looks at the grass?). Two modes
share one layout, a row of dropdowns above the panel:

* **live** (``static=False``, JupyterLab with a kernel): panels are computed when a control
  changes and memoized, so any models (e.g. checkpoints the reader loads) and any folder of
  JPEGs (:func:`camtrap_ssl.data.images.load_image_folder`) can be explored. Live mode adds controls
  a static page cannot afford: the CAM layer for saliency, any filter index for filters.
* **static** (``static=True``, the published book, no kernel): every panel is rendered up front
  to a PNG inside an ``ipywidgets.Image``. Panels sit in nested ``widgets.Stack`` s - one outer
  child per image, one inner child per method / block - and ``jslink`` ties each dropdown's
  ``index`` to the stacks' ``selected_index``, so switching happens purely in the browser from
  the saved widget state (nbclient stores it when the notebook executes). Two dropdowns over
  nested stacks address the same n_images x n_options panels as a flattened stack would, without
  any custom JavaScript. ``max_panels`` caps the page size and is checked before rendering.
"""
from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from camtrap_ssl.analysis.attribution import (
    LAYER_METHODS,
    METHODS,
    attribute,
    overlay,
    to_2d,
    to_hwc,
)
from camtrap_ssl.analysis.filters import collect_activations, most_activated_filters
from camtrap_ssl.data.images import load_image_folder
from camtrap_ssl.models.utils import BLOCKS, check_images, model_device


@dataclass
class Explorer:
    """The widget plus handles to its parts (for tests and for saving a standalone page)."""

    widget: object  # ipywidgets.VBox
    controls: dict  # name -> Dropdown / IntText
    view: object  # live: the Image widget; static: the outer Stack
    links: list = field(default_factory=list)  # jslink objects (static mode)
    n_panels: int = 0
    static: bool = False

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def state(self) -> dict:
        """Widget state of the explorer and its links (what a kernel-less page needs)."""
        from ipywidgets.embed import dependency_state

        return dependency_state([self.widget, *self.links], drop_defaults=True)

    def save_html(self, path: str | os.PathLike, title: str = "explorer") -> None:
        """A standalone HTML page with the explorer (static mode works without a kernel)."""
        from ipywidgets.embed import embed_minimal_html

        embed_minimal_html(os.fspath(path), views=[self.widget], state=self.state(), title=title)


# ------------------------------------------------------------------------------------ helpers
def _images_and_labels(images, labels, image_size: int):
    if isinstance(images, (str, os.PathLike)):

        images, paths = load_image_folder(images, image_size)
        labels = labels if labels is not None else [p.name for p in paths]
    check_images(images)
    labels = list(labels) if labels is not None else [f"image {i}" for i in range(len(images))]
    if len(labels) != len(images):
        raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
    return images, labels


def _check_models(models: Mapping[str, nn.Module]) -> None:
    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty dict {name: nn.Module}")
    for name, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"models[{name!r}] is {type(m)}, not an nn.Module")


def _png(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _panel(image: Tensor, maps: Sequence[Tensor | None], titles: Sequence[str], label: str,
           dpi: int) -> bytes:
    """PNG of one row: the image, then one overlay per model (None draws an empty slot)."""
    from matplotlib.figure import Figure

    # fixed margins instead of constrained layout: panels are rendered by the dozen
    fig = Figure(figsize=(1.9 * (len(maps) + 1), 2.1))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.06)
    axes = fig.subplots(1, len(maps) + 1, squeeze=False)[0]
    axes[0].imshow(to_hwc(image))
    axes[0].set_title(label, fontsize=8)
    axes[0].set_axis_off()
    for ax, m, t in zip(axes[1:], maps, titles):
        if m is None:
            ax.set_axis_off()
            ax.set_title(t, fontsize=8)
        else:
            overlay(image, m, ax=ax, title=t)
    return _png(fig, dpi)


def _predictions(models, images, class_names):
    """Per model: (predicted classes (N,), caption per image)."""
    out = {}
    for name, m in models.items():
        with torch.no_grad():
            was = m.training
            m.eval()
            probs = torch.softmax(m(images.to(model_device(m))), 1).cpu()
            m.train(was)
        p, c = probs.max(1)
        caps = [f"{name}: {class_names[int(k)] if class_names else int(k)} ({float(q):.2f})"
                for k, q in zip(c, p)]
        out[name] = (c, caps)
    return out


def _dropdown(description: str, labels: Sequence[str]):
    import ipywidgets as widgets

    return widgets.Dropdown(options=[(str(lab), i) for i, lab in enumerate(labels)], value=0,
                            description=description)


def _static(rows: tuple[str, Sequence[str]], cols: tuple[str, Sequence[str]],
            render: Callable[[int, int], bytes]) -> Explorer:
    """Nested stacks (rows outer, cols inner) of pre-rendered panels, switched by jslinks."""
    import ipywidgets as widgets

    row_dd, col_dd = _dropdown(rows[0], rows[1]), _dropdown(cols[0], cols[1])
    inner = []
    for i in range(len(rows[1])):
        leaves = [widgets.Image(value=render(i, j), format="png") for j in range(len(cols[1]))]
        inner.append(widgets.Stack(children=leaves, selected_index=0))
    outer = widgets.Stack(children=inner, selected_index=0)
    links = [widgets.jslink((row_dd, "index"), (outer, "selected_index"))]
    links += [widgets.jslink((col_dd, "index"), (s, "selected_index")) for s in inner]
    box = widgets.VBox([widgets.HBox([row_dd, col_dd]), outer])
    return Explorer(box, {rows[0]: row_dd, cols[0]: col_dd}, outer, links,
                    len(rows[1]) * len(cols[1]), True)


def _live(controls: dict, render: Callable[..., bytes]) -> Explorer:
    """Controls above one Image; any change re-renders (``render`` memoizes)."""
    import ipywidgets as widgets

    image = widgets.Image(format="png")

    def update(_change=None):
        image.value = render(**{k: c.value for k, c in controls.items()})

    for c in controls.values():
        c.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox(list(controls.values())), image])
    return Explorer(box, controls, image, [], 0, False)


def _check_panels(n: int, max_panels: int) -> None:
    if n > max_panels:
        raise ValueError(f"the static explorer would render {n} panels, more than "
                         f"max_panels={max_panels}; pass fewer images or options, or raise "
                         "max_panels (each panel adds a PNG to the page)")


# ------------------------------------------------------------------------------------ saliency
def saliency_explorer(models: Mapping[str, nn.Module], images, labels: Sequence[str] | None = None,
                      methods: Sequence[str] = ("saliency", "guided_backprop", "gradcam",
                                                "scorecam"),
                      static: bool = False, layer: str = "layer4", targets=None,
                      class_names: Sequence[str] | None = None, max_panels: int = 60,
                      image_size: int = 64, dpi: int = 72, reduce: str = "abs_max",
                      layers: Sequence[str] = BLOCKS) -> Explorer:
    """Explore saliency maps: choose image and method; all models side by side.

    ``images``: tensor (N, 3, H, W) in [0, 1] or a folder of JPEGs (loaded at ``image_size``).
    ``targets``: class per image (e.g. the true labels) or None for each model's own
    prediction. ``layer``: CAM layer in static mode; live mode offers ``layers`` in a dropdown.
    """
    _check_models(models)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods {bad or list(methods)} invalid; allowed: {list(METHODS)}")
    images, labels = _images_and_labels(images, labels, image_size)
    methods = list(methods)
    if static:
        _check_panels(len(images) * len(methods), max_panels)
    preds = _predictions(models, images, class_names)

    def target_for(name):
        return preds[name][0] if targets is None else targets

    if static:
        maps = {(name, meth): to_2d(attribute(m, images, target_for(name), meth, layer=layer),
                                    reduce)
                for meth in methods for name, m in models.items()}
        return _static(("image", labels), ("method", methods),
                       lambda i, j: _panel(images[i], [maps[(n, methods[j])][i, 0] for n in models],
                                           [preds[n][1][i] for n in models],
                                           f"{labels[i]} - {methods[j]}", dpi))

    cache: dict = {}

    def render(image, method, layer):
        key = (image, method, layer if methods[method] in LAYER_METHODS else None)
        if key not in cache:
            t = (lambda n: preds[n][0][image:image + 1]) if targets is None else (
                lambda n: torch.as_tensor(targets).flatten()[image:image + 1])
            ms = [to_2d(attribute(m, images[image:image + 1], t(n), methods[method],
                                  layer=layers[layer]), reduce)[0, 0]
                  for n, m in models.items()]
            cache[key] = _panel(images[image], ms, [preds[n][1][image] for n in models],
                                f"{labels[image]} - {methods[method]}", dpi)
        return cache[key]

    controls = {"image": _dropdown("image", labels), "method": _dropdown("method", methods),
                "layer": _dropdown("CAM layer", layers)}
    controls["layer"].value = list(layers).index(layer) if layer in layers else len(layers) - 1
    return _live(controls, render)


# ------------------------------------------------------------------------------------ filters
def filter_explorer(models: Mapping[str, nn.Module], images, labels: Sequence[str] | None = None,
                    layers: Sequence[str] = BLOCKS, static: bool = False, max_panels: int = 60,
                    image_size: int = 64, dpi: int = 72) -> Explorer:
    """Explore feature maps: choose image and block; every model's most activated filter (the
    study's picture). Live mode adds a ``filter`` box: -1 = most activated, else that channel
    index in every model (left empty where a model has fewer channels)."""
    import ipywidgets as widgets

    _check_models(models)
    images, labels = _images_and_labels(images, labels, image_size)
    layers = list(layers)
    if static:
        _check_panels(len(images) * len(layers), max_panels)
        res = {n: most_activated_filters(m, images, layers) for n, m in models.items()}
        return _static(("image", labels), ("block", layers),
                       lambda i, j: _panel(
                           images[i], [res[n].maps[layers[j]][i] for n in models],
                           [f"{n}: #{int(res[n].indices[layers[j]][i])}" for n in models],
                           f"{labels[i]} - {layers[j]}", dpi))

    acts_cache: dict = {}

    def acts(name, i):
        if (name, i) not in acts_cache:
            (_, a), = list(collect_activations(models[name], images[i:i + 1], layers, 1))
            acts_cache[(name, i)] = {k: v[0].cpu() for k, v in a.items()}
        return acts_cache[(name, i)]

    panels: dict = {}

    def render(image, block, filter):
        key = (image, block, filter)
        if key not in panels:
            maps, titles = [], []
            for n in models:
                a = acts(n, image)[layers[block]]
                k = int(a.mean(dim=(1, 2)).argmax()) if filter < 0 else filter
                if k >= a.shape[0]:
                    maps.append(None)
                    titles.append(f"{n}: only {a.shape[0]} filters")
                    continue
                up = torch.nn.functional.interpolate(a[k][None, None], size=images.shape[-2:],
                                                     mode="bilinear", align_corners=False)
                maps.append(up[0, 0])
                titles.append(f"{n}: #{k}" + (" (max)" if filter < 0 else ""))
            panels[key] = _panel(images[image], maps, titles, f"{labels[image]} - {layers[block]}",
                                 dpi)
        return panels[key]

    controls = {"image": _dropdown("image", labels), "block": _dropdown("block", layers),
                "filter": widgets.BoundedIntText(value=-1, min=-1, max=100000,
                                                 description="filter")}
    return _live(controls, render)
