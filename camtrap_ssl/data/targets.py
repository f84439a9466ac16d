"""Every fine-tuning target by name (the embedded stand-ins and the study's real datasets) or by
path (your own camera traps: a COCO Camera Traps file, a Camtrap DP package or a folder of class
folders, :mod:`camtrap_ssl.data.user`)."""
from __future__ import annotations

from camtrap_ssl.core.profiles import DEFAULT_PROFILE, Profile, get_profile
from camtrap_ssl.data.embedded import STANDS_IN_FOR, TARGETS, load_target
from camtrap_ssl.data.paper import PAPER_TARGETS, load_paper_target
from camtrap_ssl.data.user import (KINDS, is_target_path, load_user_target, target_key,  # noqa: F401
                                   target_kind, user_target_identity)

SMALL_TARGETS = {"syn_ena24", "ena24"}  # the ENA24 regime: more epochs (SPEC section 4)


def all_targets() -> list[str]:
    """Embedded stand-ins first, then the study's real datasets."""
    return list(TARGETS) + [t for t in PAPER_TARGETS if t not in TARGETS]


def stands_in_for(name: str) -> str:
    """The study dataset a target stands in for (a real dataset stands for itself)."""
    return STANDS_IN_FOR.get(name, name)


def get_target(name: str, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0, masks: bool = False,
               progress: bool = True, strip_fraction: float | None = None):
    """Any fine-tuning target by name: an embedded ``syn_*`` one or a real dataset
    (:mod:`camtrap_ssl.data.paper`, stored at the profile's ``resize_size`` with its strip cut).
    ``strip_fraction``: the share of each frame's rows cut from its bottom (None: the target's
    own: the profile's for the real camera-trap sets, the drawn strip of the embedded worlds)."""
    if name in PAPER_TARGETS:
        p = get_profile(profile)
        strip = p.strip_fraction if strip_fraction is None else strip_fraction
        return load_paper_target(name, size=p.resize_size, seed=seed, strip_fraction=strip,
                                 progress=progress)
    return load_target(name, profile, seed, masks=masks, strip_fraction=strip_fraction)
