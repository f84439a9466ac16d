"""A timm-style registry: one name -> how to build the network, where its weights live, how to read them.

Why a registry of plain dataclasses: the studies compare many backbones that differ in method,
paradigm and family, and the book must say for each where its weights come from and which input
statistics it expects. Keeping all of that in one frozen record per name makes every fact about a
backbone reviewable in one place and lets ``create_model(name)`` be the single entry point
(ARCHITECTURE.md). Paper-scale entries are added by :mod:`camtrap_ssl.models.zoo`.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .resnet import IMAGENET_MEAN, IMAGENET_STD, resnet
from .weights import fetch_weights, load_checkpoint, resolve_url, sha256_file

#: The one table of pretraining methods: method -> (paradigm "SL" or "SSL", SSL family "instance"
#: or "cluster", None for SL). Registry entries (here and in :mod:`camtrap_ssl.models.zoo`) and the
#: embedded pretraining methods (:mod:`camtrap_ssl.pretrain.methods`) both read it, so a method is
#: classified once; it lives in the models layer, the lowest that needs it. ``none`` is a random
#: initialization, filed under SL as it always was so that the paradigm column keeps two values.
METHOD_TABLE: dict[str, tuple[str, str | None]] = {
    "none": ("SL", None),
    "supervised": ("SL", None),
    "simclr": ("SSL", "instance"),  # the embedded SimCLR (v2 recipe) of camtrap_ssl.pretrain
    "simclrv2": ("SSL", "instance"),
    "barlowtwins": ("SSL", "instance"),
    "swav": ("SSL", "cluster"),
    "deepclusterv2": ("SSL", "cluster"),
}


def identity_keys(state_dict: dict) -> dict:
    """The checkpoint already uses this package's (torchvision) key names."""
    return dict(state_dict)


@dataclass(frozen=True)
class WeightSource:
    """Where a checkpoint lives and how its keys become this package's keys.

    ``sha256`` is the full hex digest or a published prefix (torchvision publishes the first
    8 hex digits in its file names); ``None`` where no checksum is published. ``instructions``
    tell a user how to obtain the file by hand (required for ``gs://`` sources).
    """

    url: str
    filename: str
    sha256: str | None = None
    key_map: Callable[[dict], dict] = identity_keys
    instructions: str = ""

    def __post_init__(self):
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise ValueError(f"filename must be a bare file name, got {self.filename!r}")
        if self.sha256 is not None:
            h = self.sha256.lower()
            if len(h) < 8 or any(ch not in "0123456789abcdef" for ch in h):
                raise ValueError(f"sha256 must be >= 8 hex digits or None, got {self.sha256!r}")


@dataclass(frozen=True)
class ModelEntry:
    """Everything the study needs to know about one named backbone."""

    name: str
    builder: Callable[..., nn.Module]
    arch: dict
    method: str  # a key of METHOD_TABLE
    paradigm: str | None = None  # "SL" or "SSL": filled in from METHOD_TABLE
    family: str | None = None  # "instance", "cluster" or None (SL): filled in from METHOD_TABLE
    weights: WeightSource | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    input_size: int = 224
    num_features: int = 0
    params_m: float | None = None  # backbone parameters (millions) as in the study's table
    description: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.method not in METHOD_TABLE:
            raise ValueError(f"{self.name}: method={self.method!r} is not in METHOD_TABLE; allowed: "
                             f"{list(METHOD_TABLE)} (a new method gets its row there)")
        paradigm, family = METHOD_TABLE[self.method]
        if self.paradigm not in (None, paradigm) or self.family not in (None, family):
            raise ValueError(f"{self.name}: method {self.method!r} is ({paradigm}, {family}) in "
                             f"METHOD_TABLE, not ({self.paradigm}, {self.family}); leave both out")
        object.__setattr__(self, "paradigm", paradigm)
        object.__setattr__(self, "family", family)
        if self.num_features <= 0:
            raise ValueError(f"{self.name}: num_features must be positive")


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(entry: ModelEntry, overwrite: bool = False) -> ModelEntry:
    """Add ``entry`` under ``entry.name``; re-registering a name needs ``overwrite=True``."""
    if entry.name in _REGISTRY and not overwrite:
        raise ValueError(f"model {entry.name!r} is already registered (pass overwrite=True)")
    _REGISTRY[entry.name] = entry
    return entry


def unregister_model(name: str) -> ModelEntry:
    """Remove and return ``name`` (tests and notebooks that register temporary entries)."""
    entry = get_entry(name)
    del _REGISTRY[name]
    return entry


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted registered names, optionally filtered by a shell-style ``pattern`` ('swav*')."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_entry(name: str) -> ModelEntry:
    """The registry record of ``name``; unknown names list the registered ones and close matches."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown model name {name!r}.{hint} Registered: {list_models()}") from None


def create_model(name: str, pretrained: bool = False, num_classes: int | None = None, *,
                 weights_url: str | None = None, check_hash: bool = True,
                 cache_dir: str | None = None, progress: bool = True, load_head: bool = False,
                 **kwargs) -> nn.Module:
    """Build the registered backbone ``name`` (timm style).

    ``num_classes=None`` gives no classifier (``fc = Identity``, ``model(x)`` returns pooled
    features); an int gives a fresh ``nn.Linear(num_features, num_classes)``. ``kwargs`` override
    the entry's architecture arguments, e.g. ``mean=0.0, std=1.0`` for SimCLR-style inputs.

    ``pretrained=True`` fetches the entry's checkpoint through :mod:`camtrap_ssl.models.weights`
    (cache, resume, sha256, ``weights_only`` loading). ``weights_url`` (or the environment
    variable ``CAMTRAP_SSL_WEIGHTS_URL_<NAME>``) points the entry at another ``http(s)://`` or
    ``file://`` location, e.g. a file converted by hand. ``load_head=True`` also loads the
    checkpoint's classifier into ``fc`` (needs ``num_classes`` equal to the head's size).
    """
    entry = get_entry(name)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
        raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
    if pretrained and entry.weights is None and weights_url is None:
        raise ValueError(f"model {name!r} has no registered weights; pretrained=True needs "
                         "weights_url=... or a registry entry with a WeightSource")
    if load_head and num_classes is None:
        raise ValueError("load_head=True needs num_classes (the checkpoint head's size)")
    allowed = set(inspect.signature(entry.builder).parameters) - {"num_classes"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError(f"create_model({name!r}): unknown argument(s) {unknown}; the builder "
                        f"{entry.builder.__name__} accepts {sorted(allowed)}")
    path = None
    if pretrained:  # fetch (or fail with instructions) before building a large network
        path = fetch_weights(entry, weights_url=weights_url, check_hash=check_hash,
                             cache_dir=cache_dir, progress=progress)
    arch = {"mean": entry.mean, "std": entry.std, **entry.arch, **kwargs}
    model = entry.builder(num_classes=num_classes, **arch)
    model.entry_name = name
    if pretrained:
        load_entry_weights(model, entry, path, load_head=load_head, weights_url=weights_url)
    return model


def load_backbone_state(model: nn.Module, state_dict: dict, strict_backbone: bool = True,
                        load_head: bool = False) -> dict:
    """Load an already key-mapped ``state_dict`` into ``model``'s backbone.

    ``fc.*`` keys are ignored unless ``load_head`` (a fresh or absent head stays as it is). Any
    shape mismatch raises naming the first mismatched key and both shapes. With
    ``strict_backbone`` a missing backbone key, or a key the model does not have, raises listing
    them. BatchNorm ``num_batches_tracked`` counters are optional (old torchvision files lack
    them). Returns ``{"loaded": [...], "ignored": [...], "missing": [...], "unexpected": [...]}``.
    """
    if not isinstance(state_dict, dict):
        raise TypeError(f"state_dict must be a dict of tensors, got {type(state_dict).__name__}")
    own = model.state_dict()
    is_head = lambda k: k == "fc" or k.startswith("fc.")  # noqa: E731
    ignored = [k for k in state_dict if is_head(k) and not load_head]
    wanted = {k: v for k, v in state_dict.items() if not (is_head(k) and not load_head)}
    for k, v in wanted.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state_dict[{k!r}] is a {type(v).__name__}, not a tensor")
    for k in own:  # model order, so "first mismatched" is well defined
        if k in wanted and tuple(wanted[k].shape) != tuple(own[k].shape):
            raise ValueError(f"shape mismatch at {k!r}: checkpoint {tuple(wanted[k].shape)} vs "
                             f"model {tuple(own[k].shape)}")
    optional = lambda k: k.endswith("num_batches_tracked")  # noqa: E731
    missing = [k for k in own if k not in wanted and not optional(k)
               and (load_head or not is_head(k))]
    unexpected = [k for k in wanted if k not in own]
    if strict_backbone and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing backbone keys ({len(missing)}): {missing[:20]}"
                         + (" ..." if len(missing) > 20 else ""))
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {unexpected[:20]}"
                         + (" ..." if len(unexpected) > 20 else ""))
        raise ValueError("checkpoint does not fit the model: " + "; ".join(parts))
    loadable = {k: v for k, v in wanted.items() if k in own}
    model.load_state_dict(loadable, strict=False)
    return {"loaded": sorted(loadable), "ignored": sorted(ignored), "missing": missing,
            "unexpected": unexpected}


def _resnet_entry(name: str, depth: int, width: float, small_stem: bool, input_size: int,
                  description: str) -> ModelEntry:
    expansion = 4 if depth >= 50 else 1
    feats = max(1, int(round(512 * width))) * expansion
    return ModelEntry(name=name, builder=resnet,
                      arch={"depth": depth, "width": width, "small_stem": small_stem},
                      method="none", input_size=input_size,
                      num_features=feats, description=description)


# Plain architectures (random init): the paper profile's "resnet50" and friends.
for _d in (10, 18, 34, 50, 101, 152):
    register_model(_resnet_entry(f"resnet{_d}", _d, 1.0, False, 224,
                                 f"torchvision-layout ResNet-{_d}, random init"))
# Embedded demo architectures: small stems for 32-64 px images, a few hundred k params or less.
register_model(_resnet_entry("resnet18_w025", 18, 0.25, True, 64,
                             "ResNet-18 at width 0.25 (16/32/64/128 ch), small stem: demo profile"))
register_model(_resnet_entry("resnet10_w0125", 10, 0.125, True, 32,
                             "ResNet-10 [1,1,1,1] at width 0.125 (8/16/32/64 ch), small stem: tests"))


def load_entry_weights(model, entry, path: str | os.PathLike, load_head: bool = False,
                    weights_url: str | None = None) -> dict:
    """Read the checkpoint at ``path`` (see :func:`fetch_weights`), map its keys with the entry's
    key map, and load the backbone; returns :func:`load_backbone_state`'s report.

    Sets ``model.weights_info`` = {name, url, path, sha256} so run records can cite the exact file.
    """
    checkpoint = load_checkpoint(path)
    key_map = entry.weights.key_map if entry.weights is not None else identity_keys
    try:
        state = key_map(checkpoint)
    except (ValueError, KeyError, AttributeError) as e:
        raise ValueError(f"checkpoint {path} does not have the layout {entry.name!r} expects: {e}") from e
    report = load_backbone_state(model, state, strict_backbone=True, load_head=load_head)
    url, _, _ = resolve_url(entry, weights_url)
    model.weights_info = {"name": entry.name, "url": url, "path": str(path),
                          "sha256": sha256_file(path)}
    return report
