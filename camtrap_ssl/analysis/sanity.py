"""Do the saliency maps respond to the model at all? The model-parameter randomisation test.

Adebayo et al. ("Sanity checks for saliency maps", NeurIPS 2018) randomise a trained network's
weights layer by layer from the top ("cascading randomisation") and compare each method's maps
before and after: a map that barely changes when the weights that produced the prediction are
destroyed explains the image (edges, contrast), not the model. Guided backpropagation and Guided
Grad-CAM famously fail it; plain gradients and Grad-CAM pass. Before reading Study 4's maps as
"what the model looks at", the book shows which of our methods pass on our models.

:func:`cascading_randomisation` follows the paper: stages randomise ``fc``, then also ``layer4``,
then ``layer3`` and so on (cumulatively); the similarity of a randomised map to the original is
the Spearman rank correlation over pixels (maps reduced with ``to_2d(..., "abs_max")``, the
paper's absolute-value variant), per image, then mean and standard deviation over images.
Randomised weights are drawn from a generator seeded by ``seed`` with each tensor's own mean and
standard deviation, so the scale the BatchNorm layers expect is kept.
"""
from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import rankdata
from torch import nn

from camtrap_ssl.analysis.attribution import METHODS, attribute, to_2d
from camtrap_ssl.core.progress import progress_bar
from camtrap_ssl.models.utils import check_images, get_layer

CASCADE: tuple[str, ...] = ("fc", "layer4", "layer3", "layer2", "layer1")
"""Top-down order of the stages randomised (cumulatively), as in Adebayo et al."""


def randomise(model: nn.Module, layers: Sequence[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose parameters in ``layers`` are redrawn from a normal with each
    tensor's own mean and standard deviation (biases and BN affine parameters included)."""
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in layers:
            for p in get_layer(out, name).parameters():
                sd = float(p.std()) if p.numel() > 1 else 0.0
                p.copy_((torch.randn(p.shape, generator=g) * (sd or 1.0) + float(p.mean()))
                        .to(p))
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")  # a constant map has no ranking
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def cascading_randomisation(model: nn.Module, images: torch.Tensor, target,
                            methods: Sequence[str] = tuple(METHODS),
                            cascade: Sequence[str] = CASCADE, seed: int = 0,
                            progress: bool = False) -> pd.DataFrame:
    """Rank correlation of each method's maps with the maps after cascading randomisation.

    ``target``: the class explained, as for :func:`~camtrap_ssl.analysis.attribution.attribute`
    (pass the true labels: the randomised model's own prediction would change the question).
    Returns one row per method and stage: ``method``, ``stage`` (1 = only ``fc`` randomised),
    ``randomised`` (the stage's top-most layer: all layers above it are randomised too),
    ``spearman_mean``, ``spearman_std``, ``n`` (images with a defined correlation) and
    ``n_blank`` (maps with no ranking, original or randomised). 1 = the map ignores the weights.
    """
    check_images(images)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"methods {bad or list(methods)}; allowed: {list(METHODS)}")
    for name in cascade:
        get_layer(model, name)
    if isinstance(target, torch.Tensor) or not isinstance(target, (int, np.integer)):
        target = torch.as_tensor(target).reshape(-1)

    def maps(m):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # blank maps are counted below
            return {meth: to_2d(attribute(m, images, target, meth)).flatten(1).numpy()
                    for meth in methods}

    before = maps(model)
    rows = []
    for stage in progress_bar(range(1, len(cascade) + 1), desc="randomisation", show=progress):
        after = maps(randomise(model, cascade[:stage], seed))
        for meth in methods:
            r = np.array([_spearman(a, b) for a, b in zip(before[meth], after[meth])])
            ok = r[~np.isnan(r)]
            rows.append({"method": meth, "stage": stage, "randomised": cascade[stage - 1],
                         "spearman_mean": float(ok.mean()) if ok.size else float("nan"),
                         "spearman_std": float(ok.std(ddof=1)) if ok.size > 1 else float("nan"),
                         "n": int(ok.size), "n_blank": int(np.isnan(r).sum())})
    return pd.DataFrame(rows)
