"""The study's reported numbers (tables 5.1 to 5.15), shipped as data, and how ours map onto them.

Our embedded backbones are small ResNets pretrained on a synthetic world, not the study's
ImageNet ResNet-50s; a table row pairs each of ours with the study's ResNet-50 (1x) result of the
same method on the dataset our target stands in for, which is the closest counterpart there is.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

CSV = Path(__file__).resolve().parent / "thesis_reported.csv"

# embedded method -> the study's method name
STUDY_METHOD = {"supervised": "supervised", "simclr": "simclrv2", "barlowtwins": "barlowtwins",
                "swav": "swav", "deepclusterv2": "deepclusterv2", "simclrv2": "simclrv2"}


@lru_cache(maxsize=1)
def reported() -> pd.DataFrame:
    """Every reported result; ``table`` is kept as text ("5.10" is not "5.1")."""
    return pd.read_csv(CSV, dtype={"table": str})


def study_row(dataset: str, method: str, architecture: str = "resnet50-1x") -> dict | None:
    """The study's accuracy row (not the convergence tables) for one dataset/method/architecture."""
    df = reported()
    m = STUDY_METHOD.get(method, method)
    rows = df[(df.dataset == dataset) & (df.method == m) & (df.architecture == architecture)
              & df.convergence_epochs.isna()]
    if rows.empty:
        return None
    return rows.iloc[0].to_dict()


def study_convergence(dataset: str, method: str, architecture: str | None = None) -> float | None:
    """The study's convergence epochs (tables 5.11-5.15) for a dataset and method, if reported."""
    df = reported()
    m = STUDY_METHOD.get(method, method)
    rows = df[(df.dataset == dataset) & (df.method == m) & df.convergence_epochs.notna()]
    if architecture is not None:
        rows = rows[rows.architecture == architecture]
    return None if rows.empty else float(rows.iloc[0].convergence_epochs)
