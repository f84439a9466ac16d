"""The checks of every run setting: one function per setting, each raising one ``ValueError``
that names the setting, the value and what is allowed.

:class:`~camtrap_ssl.experiments.spec.RunSpec` checks its fields with them, the studies' parameter
check (:func:`camtrap_ssl.studies.params.rules`) and the command line use the same functions one
by one, so a value one entry point accepts the others accept too.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from camtrap_ssl.core.profiles import PROFILES, Profile, get_profile
from camtrap_ssl.data.targets import all_targets, is_target_path
from camtrap_ssl.experiments.backbones import backbone_names, is_backbone
from camtrap_ssl.train.finetune import MAX_EPOCHS

CIFAR_TARGETS = ("cifar10", "cifar100")


def _refuse(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"{name}={value!r} is not allowed; {name} must be {allowed}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_profile(value, name: str = "profile") -> Profile:
    if isinstance(value, Profile):
        return value
    if not isinstance(value, str) or value not in PROFILES:
        raise _refuse(name, value, f"one of {sorted(PROFILES)}")
    return get_profile(value)


def check_seed(value, name: str = "seed") -> int:
    if not _is_int(value) or value < 0:
        raise _refuse(name, value, "an integer >= 0 (not a string or a bool)")
    return value


def check_epochs(value, name: str = "epochs") -> int | None:
    if value is not None and (not _is_int(value) or not 1 <= value <= MAX_EPOCHS):
        raise _refuse(name, value, f"None (the profile's budget) or an integer in [1, {MAX_EPOCHS}]")
    return value


def check_lr(value, name: str = "lr") -> float | None:
    if value is not None and (not _is_number(value) or not math.isfinite(value) or value <= 0):
        raise _refuse(name, value, "None (the profile's) or a finite number > 0")
    return None if value is None else float(value)


def check_nonneg_number(value, name: str, optional: bool = False) -> float | None:
    if optional and value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or value < 0:
        raise _refuse(name, value, ("None or " if optional else "") + "a finite number >= 0")
    return float(value)


def check_positive_int(value, name: str, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if not _is_int(value) or value < 1:
        raise _refuse(name, value, ("None or " if optional else "") + "an integer >= 1")
    return value


def check_choice(value, name: str, allowed) -> str:
    if value not in tuple(allowed) or not isinstance(value, str):
        raise _refuse(name, value, f"one of {list(allowed)}")
    return value


def check_strip(value, target: str, name: str = "strip") -> float | int | None:
    """None (the target's strip) or a share of the rows in [0, 0.5); for a target given by path
    also a number of rows (an int >= 1: a user's camera has its own strip height); CIFAR has no
    strip to cut."""
    if value is None:
        return None
    if _is_int(value) and value >= 1 and is_target_path(target):
        return value
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value < 0.5:
        raise _refuse(name, value, "None (the target's) or a number in [0, 0.5) (the share of "
                                   "each frame's rows cut from its bottom)"
                      + ("; or a number of rows, an integer >= 1" if is_target_path(target) else ""))
    if value and (target in CIFAR_TARGETS or target == "syn_cifar"):
        raise _refuse(name, value, f"None or 0 for target {target!r}: its images carry no "
                                   "information strip")
    return float(value)


def check_backbone(value, name: str = "backbone") -> str:
    if isinstance(value, os.PathLike):
        value = str(value)
    if not isinstance(value, str) or not is_backbone(value):
        raise _refuse(name, value, f"one of {backbone_names()} or an existing pretraining "
                                   "checkpoint file (.pt)")
    return value


def check_label_fraction(value, name: str = "label_fraction") -> float:
    if not _is_number(value) or not math.isfinite(value) or not 0 < value <= 1:
        raise _refuse(name, value, "a number in (0, 1] (the share of the training labels used)")
    return float(value)


def check_target(value, name: str = "target") -> str:
    """A target name, or the path of the user's own data (a COCO Camera Traps JSON, a Camtrap DP
    package or its datapackage.json, a folder of class folders), kept as its absolute path."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str) and value in all_targets():
        return value
    if isinstance(value, str) and is_target_path(value):
        return str(Path(value).expanduser().resolve())
    raise _refuse(name, value, f"one of {all_targets()}, or the path of a COCO Camera Traps "
                               "JSON, a Camtrap DP package or a folder of class folders")


def check_replicates(value, name: str = "replicates") -> dict[str, int]:
    """None (``{}``) or ``{target: runs per backbone}``, each target checked and kept as
    :func:`check_target` keeps it (a path as its absolute path, so a relative path matches the run
    specs' own), each count an integer >= 1."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _refuse(name, value, "None or a dict {target: runs per backbone}")
    return {check_target(t, f"{name} target"): check_positive_int(n, f"{name}[{t!r}]")
            for t, n in value.items()}


def check_runs_root(value, name: str = "runs_root") -> Path | None:
    """Type only (a path or None: ``$CAMTRAP_SSL_RUNS`` or the repository's ``runs/``); whether it
    can be written is :meth:`RunSpec.check_writable`'s business, just before work starts."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise _refuse(name, value, "None or a folder path")
    return Path(value).expanduser()


def names(value, name: str) -> list[str]:
    """A list of names from a list or a comma-separated string, order kept, duplicates dropped.
    Each list item may itself be comma-separated (a repeated command-line option), except an
    existing path, which is kept whole: a path may contain commas."""
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _refuse(name, value, "a list of names or a comma-separated string")
    split = []
    for v in value:
        v = os.fspath(v) if isinstance(v, os.PathLike) else v
        if not isinstance(v, str):
            raise _refuse(name, value, "a list of names or a comma-separated string")
        split += [v] if os.path.exists(v) else [x.strip() for x in v.split(",")]
    out = [v for v in dict.fromkeys(split) if v]
    if not out:
        raise _refuse(name, value, "at least one name")
    return out


def _int_or_float(text: str):
    """A number of rows (an integer) or a share (a float)."""
    return int(text) if text.strip().lstrip("+").isdigit() else float(text)


_EXPECTED = {int: "an integer", float: "a number", _int_or_float: "a number"}


def parse_as(kind):
    """An argparse type that only parses (an int, a float, JSON); the checks are RunSpec's."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {_EXPECTED.get(kind, 'JSON or a comma-separated list')}"
                                             f", got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


