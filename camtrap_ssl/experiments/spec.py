"""One run specification: what a fine-tuning run is, checked once for every entry point.

``camtrap-ssl finetune``, ``camtrap-ssl grid``, the torchrun launcher, the study notebooks'
parameter check and :func:`camtrap_ssl.experiments.finetuning.finetune_run` all describe a run as a
:class:`RunSpec`, take its command-line options from :func:`add_arguments` and refuse bad values
through the same checks below, so a value one of them accepts the others accept too, and a bad
one gets the same one-line message everywhere (the parameter, the value, what is allowed).

**Identity.** :meth:`RunSpec.identity` is everything that changes a run's numbers: the backbone
and the content of its weights (sha256 of the checkpoint; for a zoo name its published URL and
checksum), the target and what its data are made from (the generator version of the embedded
world; the sha256 of a real dataset's COCO Camera Traps JSON and gold-standard list), the whole
profile (sizes, architecture, budgets), the seed and the fine-tuning configuration with the epoch
budget resolved (``epochs=None`` and the profile's number are the same run). The run directory is
``<runs root>/<profile>/<target>/<backbone>/seed<k>-e<epochs>-<hash8>``, the hash being that of the
identity, so a request that differs in anything that changes results gets its own directory and a
finished run is only ever returned for exactly what it was asked. A backbone whose checkpoint was
replaced under the same name thus lands in a new directory, and the run of the old weights stays
where it was, never reused.

Not part of the identity, because they never change what is trained: ``runs_root`` (where),
``convergence_tolerance`` (how the summary reads the finished metrics; a reused run is read at the
tolerance asked) and ``lock_timeout`` (how long to wait for another process on the same run).
What the identity cannot see cheaply (which images of a real dataset failed to decode) is recorded
in the run's ``params.json`` and checked when an unfinished run resumes.
"""
from __future__ import annotations

import argparse
import math
import os
import tempfile
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path

from camtrap_ssl.core import fileio, paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, PROFILES, Profile, get_profile
from camtrap_ssl.data import paper, synthetic
from camtrap_ssl.data.embedded import TARGETS
from camtrap_ssl.data.targets import SMALL_TARGETS, all_targets
from camtrap_ssl.experiments.backbones import (
    PRETRAIN_SEED,
    backbone_names,
    backbone_sha256,
    is_backbone,
    is_checkpoint_file,
)
from camtrap_ssl.models import get_entry
from camtrap_ssl.train.finetune import MAX_EPOCHS, FinetuneConfig

# Every fine-tuning seed of a cell runs on the same embedded target world (see RunSpec.data_seed).
WORLD_SEED = 0

__all__ = [
    "MAX_EPOCHS",
    "RunSpec",
    "add_arguments",
    "check_backbone",
    "check_epochs",
    "check_label_fraction",
    "check_lr",
    "check_nonneg_number",
    "check_profile",
    "check_runs_root",
    "check_seed",
    "check_target",
    "grid_specs",
    "names",
    "specs_from_args",
]


# -- the checks (also used one by one by the studies' parameter check) ---------------------------
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
    if not isinstance(value, str) or value not in all_targets():
        raise _refuse(name, value, f"one of {all_targets()}")
    return value


def check_runs_root(value, name: str = "runs_root") -> Path | None:
    """Type only (a path or None: ``$CAMTRAP_SSL_RUNS`` or the repository's ``runs/``); whether it
    can be written is :meth:`RunSpec.check_writable`'s business, just before work starts."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise _refuse(name, value, "None or a folder path")
    return Path(value).expanduser()


def names(value, name: str) -> list[str]:
    """A list of names from a list or a comma-separated string, order kept, duplicates dropped."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, (list, tuple)):
        raise _refuse(name, value, "a list of names or a comma-separated string")
    out = [v for v in dict.fromkeys(value) if v]
    if not out:
        raise _refuse(name, value, "at least one name")
    return out


# -- the specification ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run as asked for. Constructing it checks every field (one ``ValueError``
    naming the first bad one); nothing is loaded or trained."""

    backbone: str
    target: str
    profile: Profile | str = DEFAULT_PROFILE  # a name, or a Profile (overrides are identity too)
    seed: int = 0
    epochs: int | None = None  # None: the profile's budget for the target
    lr: float | None = None  # None: the profile's
    # where and how, never what: not part of the identity
    runs_root: str | os.PathLike | None = None  # None: $CAMTRAP_SSL_RUNS or <repository>/runs
    convergence_tolerance: float = 0.5  # points of top-1, see train.metrics.convergence_epoch
    lock_timeout: float | None = None  # seconds to wait for another writer; None: as long as it takes
    # what again (part of the identity): train on a class-stratified share of the target's labels,
    # drawn with the run's seed, nested across shares (camtrap_ssl.data.datasets.with_label_fraction)
    label_fraction: float = 1.0

    def __post_init__(self):
        put = object.__setattr__  # frozen: normalise once, here
        put(self, "backbone", check_backbone(self.backbone))
        put(self, "target", check_target(self.target))
        put(self, "profile", check_profile(self.profile))
        put(self, "seed", check_seed(self.seed))
        put(self, "epochs", check_epochs(self.epochs))
        put(self, "lr", check_lr(self.lr))
        put(self, "runs_root", check_runs_root(self.runs_root))
        put(self, "convergence_tolerance",
            check_nonneg_number(self.convergence_tolerance, "convergence_tolerance"))
        put(self, "lock_timeout", check_nonneg_number(self.lock_timeout, "lock_timeout", optional=True))
        put(self, "label_fraction", check_label_fraction(self.label_fraction))

    def replace(self, **changes) -> RunSpec:
        return replace(self, **changes)

    @property
    def data_seed(self) -> int:
        """The seed the target's data are drawn with. Every fine-tuning seed of an embedded target
        runs on the same world (``WORLD_SEED``), as every one starts from the same backbone
        (``backbones.PRETRAIN_SEED``): a run's seed is its fine-tuning seed, so intervals over
        seeds cover fine-tuning variance. A real dataset's validation split is drawn with the seed."""
        return WORLD_SEED if self.target in TARGETS else self.seed

    def config(self) -> FinetuneConfig:
        """The fine-tuning configuration: the profile's settings, with what the spec overrides."""
        p = self.profile
        default = p.finetune_epochs_small if self.target in SMALL_TARGETS else p.finetune_epochs
        return FinetuneConfig(epochs=default if self.epochs is None else self.epochs,
                              batch_size=p.batch_size, lr=p.lr if self.lr is None else self.lr,
                              weight_decay=p.weight_decay, seed=self.seed,
                              # the network sees input_size, cut from frames stored at resize_size
                              augmentation=p.augmentation, crop=p.input_size,
                              convergence_tolerance=self.convergence_tolerance)

    @cached_property
    def data_identity(self) -> dict:
        """What the target's data are made from, read without loading them; a real dataset that
        is not on disk fails here, naming the command that fetches it."""
        return _data_identity(self.target)

    @cached_property
    def identity(self) -> dict:
        """Everything that changes the run's numbers (see the module docstring). For an embedded
        backbone this needs its checkpoint, which a profile without shipped ones pretrains once."""
        return {"target": {"name": self.target, **self.data_identity},
                "backbone": {"name": self.backbone, "weights": _weights_identity(self)},
                "profile": self.profile.to_dict(), "finetune": self.config().identity(),
                "label_fraction": self.label_fraction}

    @property
    def root(self) -> Path:
        return paths.runs_root(self.runs_root)

    def run_dir(self) -> Path:
        b = Path(self.backbone).stem if is_checkpoint_file(self.backbone) else self.backbone
        leaf = f"seed{self.seed}-e{self.config().epochs}-{fileio.fingerprint(self.identity)[:8]}"
        return self.root / self.profile.name / self.target / b / leaf

    def check_writable(self) -> Path:
        """Create the run directory and prove it takes a file, before any data or model is loaded:
        a read-only runs root, or one that is a file, is refused naming it."""
        rd = self.run_dir()
        root = self.root
        if root.exists() and not root.is_dir():
            raise ValueError(f"runs_root={str(root)!r} is a file, not a folder; give a folder "
                             "(--runs-root or $CAMTRAP_SSL_RUNS)")
        try:
            rd.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=rd):  # not named like the orphans others clean up
                pass
        except OSError as e:
            raise ValueError(f"runs_root={str(root)!r} cannot be written ({e.strerror or e}); give "
                             "a writable folder (--runs-root or $CAMTRAP_SSL_RUNS)") from None
        return rd


def _weights_identity(spec: RunSpec) -> dict:
    sha = backbone_sha256(spec.backbone, spec.profile, PRETRAIN_SEED)
    if sha is not None:
        return {"sha256": sha}
    w = get_entry(spec.backbone).weights  # a zoo name: its published file and checksum
    return {"url": w.url, "sha256": w.sha256}


def _data_identity(target: str) -> dict:
    """What the target's data are made from, read without loading them."""
    if target in TARGETS:  # a function of (profile, seed), both in the identity, and the generator
        return {"generator": synthetic.GENERATOR_VERSION}
    if target in paper.CAMTRAP_TARGETS:
        folder = paper.dataset_dir(target)
        gold = [folder / f for f in paper.GOLD_STANDARD_FILES if (folder / f).is_file()]
        return {"json_sha256": _sha256(paper.find_json(target)),
                "gold_standard_sha256": [_sha256(g) for g in gold]}
    paper.check_available(target)  # CIFAR: fixed files, their md5 checked when read
    return {}


def _sha256(path: Path) -> str:
    st = path.stat()  # a grid asks for the same (large) JSON once per backbone: hash it once
    return _sha256_of(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return fileio.sha256_file(path)


def grid_specs(backbones, targets, **common) -> list[RunSpec]:
    """One spec per cell (targets outer, backbones inner), all checked before any is run."""
    return [RunSpec(b, t, **common) for t in names(targets, "targets")
            for b in names(backbones, "backbones")]


# -- command line ---------------------------------------------------------------------------------
def _parsed(kind):
    """An argparse type that only parses (int or float); the range check is RunSpec's."""
    def parse(text: str):
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}"
                                             f", got {text!r}") from None
    parse.__name__ = kind.__name__
    return parse


def add_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """The run options of every command: ``--backbone``/``--target`` (``many``: ``--backbones``/
    ``--targets``, comma-separated, one run per cell), ``--profile``, ``--seed``, ``--epochs``,
    ``--lr``, ``--runs-root``, ``--lock-timeout``. :func:`specs_from_args` turns them into specs."""
    if many:
        parser.add_argument("--backbones", required=True, help="comma-separated backbone names "
                            "or pretraining checkpoint files (.pt)")
        parser.add_argument("--targets", required=True, help="comma-separated target names")
    else:
        parser.add_argument("--backbone", required=True,
                            help="a backbone name (camtrap-ssl models) or a pretraining checkpoint (.pt)")
        parser.add_argument("--target", required=True, help=f"one of {all_targets()}")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"one of {sorted(PROFILES)}")
    parser.add_argument("--seed", type=_parsed(int), default=0)
    parser.add_argument("--epochs", type=_parsed(int), default=None,
                        help="default: the profile's budget for the target")
    parser.add_argument("--lr", type=_parsed(float), default=None, help="default: the profile's")
    parser.add_argument("--label-fraction", type=_parsed(float), default=1.0,
                        help="train on this class-stratified share of the labels (0 < f <= 1)")
    parser.add_argument("--runs-root", default=None,
                        help="default: $CAMTRAP_SSL_RUNS, else runs/ in the repository")
    parser.add_argument("--lock-timeout", type=_parsed(float), default=None,
                        help="seconds to wait for another process writing the same run "
                             "(default: wait until it is done)")


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """The specs an :func:`add_arguments` parser describes (one, or one per grid cell)."""
    common = {"profile": args.profile, "seed": args.seed, "epochs": args.epochs, "lr": args.lr,
              "runs_root": args.runs_root, "lock_timeout": args.lock_timeout,
              "label_fraction": args.label_fraction}
    if hasattr(args, "backbones"):
        return grid_specs(args.backbones, args.targets, **common)
    return [RunSpec(args.backbone, args.target, **common)]
