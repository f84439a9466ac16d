"""Progress bars that a caller can hide and the environment can hide too.

tqdm takes its defaults from ``TQDM_*`` environment variables, but an argument given in the call
wins over them, so ``tqdm(..., disable=False)`` shows a bar even under ``TQDM_DISABLE=1``. The book
sets that variable for its kernels (no published page carries a bar); every bar in the package is
made here, where ``show=False`` hides it and ``show=True`` leaves ``disable`` to tqdm's defaults.
"""
from __future__ import annotations

from tqdm.auto import tqdm


def progress_bar(iterable=None, *, show: bool = True, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, hidden where ``show`` is false."""
    if "disable" in kwargs:
        raise TypeError("progress_bar takes show=, not disable= (which would override TQDM_DISABLE)")
    if not show:
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
