"""Progress bars that a caller can hide and the environment can hide too.

tqdm reads ``TQDM_*`` environment variables as defaults, but an argument given in the call wins
over them, and ``tqdm.notebook`` (what ``tqdm.auto`` gives in a Jupyter kernel) always passes
``disable`` on to tqdm itself, so ``TQDM_DISABLE=1`` alone hides no bar in a notebook. The book sets
that variable for its kernels (no published page carries a bar), so every bar of the package is
made here: hidden where ``show`` is false or ``TQDM_DISABLE`` is set, tqdm's own otherwise.
"""
from __future__ import annotations

import os

from tqdm.auto import tqdm


def hidden_by_environment() -> bool:
    """Whether ``TQDM_DISABLE`` asks for no bars (set, and not ``0``/``false``/``no``)."""
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no")


def progress_bar(iterable=None, *, show: bool = True, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, hidden where ``show`` is false or the environment
    hides bars (:func:`hidden_by_environment`)."""
    if "disable" in kwargs:
        raise TypeError("progress_bar takes show=, not disable= (which would override TQDM_DISABLE)")
    if not show or hidden_by_environment():
        kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
