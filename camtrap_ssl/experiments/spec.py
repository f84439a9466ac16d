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
import json
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from functools import cached_property, lru_cache
from pathlib import Path

from camtrap_ssl.core import fileio, paths
from camtrap_ssl.core.profiles import (
    AUGMENTATIONS,
    DEFAULT_PROFILE,
    PROFILES,
    Profile,
    get_profile,
)
from camtrap_ssl.data import paper, synthetic
from camtrap_ssl.data.embedded import TARGETS, world_strip_fraction
from camtrap_ssl.data.user import check_options, target_kind
from camtrap_ssl.data.targets import (
    SMALL_TARGETS,
    all_targets,
    is_target_path,
    target_key,
    user_target_identity,
)
from camtrap_ssl.experiments.backbones import (
    PRETRAIN_SEED,
    backbone_sha256,
    is_checkpoint_file,
    parse_embedded,
)
from camtrap_ssl.experiments.checks import (  # re-exported: the studies check with them too
    CIFAR_TARGETS,
    _int_or_float,
    _refuse,
    check_backbone,
    check_choice,
    check_epochs,
    check_label_fraction,
    check_lr,
    check_nonneg_number,
    check_positive_int,
    check_profile,
    check_replicates,
    check_runs_root,
    check_seed,
    check_strip,
    check_target,
    names,
    parse_as,
)
from camtrap_ssl.models import get_entry
from camtrap_ssl.models.utils import PRECISIONS
from camtrap_ssl.train.finetune import MAX_EPOCHS, FinetuneConfig


# Every fine-tuning seed of a cell runs on the same embedded target world (see RunSpec.data_seed).
WORLD_SEED = 0
VIEWS = ("frame", "box")  # the whole frame, or the animal's box (data.crops)

__all__ = [
    "MAX_EPOCHS",
    "RunSpec",
    "add_arguments",
    "check_backbone",
    "check_choice",
    "check_epochs",
    "check_label_fraction",
    "check_lr",
    "check_nonneg_number",
    "check_profile",
    "check_runs_root",
    "check_positive_int",
    "check_seed",
    "check_strip",
    "check_target",
    "grid_specs",
    "replicate_seeds",
    "names",
    "parse_as",
    "specs_from_args",
]


# -- the specification ---------------------------------------------------------------------------
def _json_or_names(text: str):
    """``classes`` on the command line: JSON (a list, or a mapping old -> new) or comma-separated."""
    text = text.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e}") from None
    return [c.strip() for c in text.split(",") if c.strip()]


def _field(default, help: str, parse=None, identity: bool = True):
    """A :class:`RunSpec` field with what the command line and the papermill round trip need:
    ``help`` (the option's text), ``parse`` (argparse's type: parses only, RunSpec checks) and
    whether the field is part of the run's identity."""
    return field(default=default, metadata={"help": help, "parse": parse, "identity": identity})


@dataclass(frozen=True)
class RunSpec:
    """One fine-tuning run as asked for. Constructing it checks every field (one ``ValueError``
    naming the first bad one); nothing is loaded or trained.

    It is the one object every layer passes: the command line's options are generated from its
    fields (:func:`add_arguments`), the run notebook receives it whole (:meth:`to_params` /
    :meth:`from_params`), and :func:`camtrap_ssl.experiments.finetuning.finetune_run` takes it.
    A new field reaches every entry point without another edit."""

    backbone: str = field(metadata={"help": "a backbone name (camtrap-ssl models), a pretraining "
                                            "checkpoint (.pt)", "parse": None, "identity": True})
    target: str = field(metadata={"help": "a target name", "parse": None, "identity": True})
    # a name, or a Profile (overrides are identity too)
    profile: Profile | str = _field(DEFAULT_PROFILE, f"one of {sorted(PROFILES)}")
    seed: int = _field(0, "fine-tuning seed (head, data order, augmentation; a real dataset's "
                          "split)", int)
    pretrain_seed: int = _field(PRETRAIN_SEED, "pretraining seed of an embedded backbone (0: the "
                                               "shipped one; others are pretrained on first use)", int)
    epochs: int | None = _field(None, "default: the profile's budget for the target", int)
    lr: float | None = _field(None, "default: the profile's", float)
    # train on a class-stratified share of the target's labels, drawn with the run's seed, nested
    # across shares (camtrap_ssl.data.datasets.with_label_fraction)
    label_fraction: float = _field(1.0, "train on this class-stratified share of the labels "
                                        "(0 < f <= 1)", float)
    precision: str = _field("auto", f"one of {list(PRECISIONS)}; auto: bf16 where the CPU "
                                    "multiplies bf16 natively or on CUDA, else fp32")
    # the protocol's parts; None: the target's own protocol (see RunSpec.protocol)
    augmentation: str | None = _field(None, f"one of {list(AUGMENTATIONS)}; default: the target's "
                                            "protocol")
    crop: int | None = _field(None, "side the network sees, cut from the stored images (random in "
                                    "training, centred in evaluation); default: the profile's "
                                    "input size", int)
    strip: float | None = _field(None, "share of each frame's rows cut from its bottom (the "
                                       "information strip), in [0, 0.5), or for a target by path "
                                       "a number of rows; default: the target's",
                                 _int_or_float)
    # a target given by path (the user's own data): how it is read; refused for named targets
    images: str | None = _field(None, "a target by path: the folder its COCO Camera Traps image "
                                      "paths start from (default: beside the JSON)")
    classes: list | dict | None = _field(None, "a target by path: the classes to keep (a JSON "
                                               "list or comma-separated) or a JSON mapping old -> "
                                               "new name (null drops); default: all, as the file "
                                               "names them", _json_or_names)
    min_images: int | None = _field(None, "a target by path: drop classes with fewer images",
                                    int)
    split: str = _field("auto", "a target by path: auto (by location with >= 5 locations, else "
                                "by sequence/event), location, sequence, or frame (only when "
                                "asked)")
    multi_label: str = _field("single", "a target by path: several species on one image: single "
                                        "(left out) or per_category (one sample per species)")
    # the view of the data (camera-trap practice: classify the animal's box a detector found)
    view: str = _field("frame", "frame (the whole frame, as the study) or box (the animal's box, a "
                                "padded square crop cut from the original frame)")
    box_margin: float = _field(0.10, "view box: share of the box's longer side added on each side",
                               float)
    detections: str | None = _field(None, "view box: a MegaDetector batch output file whose boxes "
                                          "are cut (default: the target's annotated boxes)")
    detection_threshold: float | None = _field(None, "view box with detections: the confidence a "
                                                     "box needs (default: the file's typical "
                                                     "threshold, else 0.2)", float)
    # where and how, never what: not part of the identity
    runs_root: str | os.PathLike | None = _field(
        None, "default: $CAMTRAP_SSL_RUNS, else runs/ in the repository", identity=False)
    convergence_tolerance: float = _field(0.5, "points of top-1, see "
                                               "train.metrics.convergence_epoch", float,
                                          identity=False)
    lock_timeout: float | None = _field(None, "seconds to wait for another process writing the "
                                              "same run (default: until it is done)", float,
                                        identity=False)

    def __post_init__(self):
        put = object.__setattr__  # frozen: normalise once, here
        put(self, "backbone", check_backbone(self.backbone))
        put(self, "target", check_target(self.target))
        put(self, "profile", check_profile(self.profile))
        put(self, "seed", check_seed(self.seed))
        put(self, "pretrain_seed", check_seed(self.pretrain_seed, "pretrain_seed"))
        if self.pretrain_seed != PRETRAIN_SEED and parse_embedded(self.backbone) is None:
            raise _refuse("pretrain_seed", self.pretrain_seed,
                          f"{PRETRAIN_SEED} for backbone {self.backbone!r}: only the embedded "
                          "backbones are pretrained here, with a seed")
        put(self, "epochs", check_epochs(self.epochs))
        put(self, "lr", check_lr(self.lr))
        put(self, "label_fraction", check_label_fraction(self.label_fraction))
        put(self, "precision", check_choice(self.precision, "precision", PRECISIONS))
        if self.augmentation is not None:
            check_choice(self.augmentation, "augmentation", AUGMENTATIONS)
        put(self, "crop", check_positive_int(self.crop, "crop", optional=True))
        put(self, "strip", check_strip(self.strip, self.target))
        self._check_data_options()
        self._check_view()
        put(self, "runs_root", check_runs_root(self.runs_root))
        put(self, "convergence_tolerance",
            check_nonneg_number(self.convergence_tolerance, "convergence_tolerance"))
        put(self, "lock_timeout", check_nonneg_number(self.lock_timeout, "lock_timeout", optional=True))
        crop = self.protocol()["crop"]
        if crop > self.profile.resize_size:
            raise _refuse("crop", crop, f"at most the stored side, {self.profile.resize_size} "
                                        f"pixels at profile {self.profile.name!r}")

    def replace(self, **changes) -> RunSpec:
        return replace(self, **changes)

    @property
    def by_path(self) -> bool:
        """Whether the target is the user's own data, given by path."""
        return self.target not in all_targets()

    def data_options(self) -> dict | None:
        """The options a target by path is read with (None for a named target)."""
        if not self.by_path:
            return None
        return {"images": self.images, "classes": self.classes, "min_images": self.min_images,
                "split": self.split, "multi_label": self.multi_label,
                "strip": self.protocol()["strip"]}

    def _check_view(self) -> None:
        put = object.__setattr__
        put(self, "view", check_choice(self.view, "view", VIEWS))
        put(self, "box_margin", check_nonneg_number(self.box_margin, "box_margin"))
        if self.box_margin > 1:
            raise _refuse("box_margin", self.box_margin, "a share of the box's side in [0, 1]")
        if self.detections is not None:
            if not isinstance(self.detections, (str, os.PathLike)) or not Path(self.detections).is_file():
                raise _refuse("detections", self.detections, "None or an existing MegaDetector "
                                                             "batch output file (.json)")
            put(self, "detections", str(Path(self.detections).resolve()))
        t = self.detection_threshold
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)
                              or not 0 < t <= 1):
            raise _refuse("detection_threshold", t, "None or a confidence in (0, 1]")
        if self.view == "frame":
            asked = [n for n in ("box_margin", "detections", "detection_threshold")
                     if getattr(self, n) != _DEFAULTS[n]]
            if asked:
                raise _refuse(asked[0], getattr(self, asked[0]),
                              f"{_DEFAULTS[asked[0]]!r} with view='frame': it applies to view='box'")
            return
        if self.target in CIFAR_TARGETS or self.target == "syn_cifar" or \
                (self.target in paper.CAMTRAP_TARGETS):
            raise _refuse("view", "box", "'frame' for the named target "
                          f"{self.target!r}" + (": its images have no animal boxes"
                                                if "cifar" in self.target else
                                                ": give its COCO Camera Traps file by path to "
                                                "crop its annotated boxes"))
        if self.detection_threshold is not None and self.detections is None:
            raise _refuse("detection_threshold", t, "None without detections (annotated boxes "
                                                    "have no confidence)")

    def view_identity(self) -> dict | None:
        """What the box view adds to the identity (None for whole frames: their identity is as
        it was before the view existed)."""
        if self.view == "frame":
            return None
        return {"view": "box", "margin": self.box_margin, "threshold": self.detection_threshold,
                "detections_sha256": (_sha256(Path(self.detections)) if self.detections else None)}

    def _check_data_options(self) -> None:
        names = ("images", "classes", "min_images", "split", "multi_label")
        if not self.by_path:
            asked = [n for n in names if getattr(self, n) != _DEFAULTS[n]]
            if asked:
                raise _refuse(asked[0], getattr(self, asked[0]),
                              f"{_DEFAULTS[asked[0]]!r} for the named target {self.target!r}: "
                              "it applies to a target given by path (your own data)")
            return
        try:
            opts = check_options(self.data_options(), target_kind(self.target))
        except ValueError as e:  # the data layer's message names the option and what is allowed
            raise ValueError(str(e)) from None
        object.__setattr__(self, "images", opts["images"])
        object.__setattr__(self, "classes", opts["classes"])

    # -- the papermill round trip: JSON-safe fields and back ------------------------------------
    def to_params(self) -> dict:
        """Every field as JSON-safe values (a profile with overrides as ``{"name": .., field:
        value, ..}``), so that ``RunSpec.from_params(spec.to_params()) == spec``."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "profile":
                base = PROFILES[v.name].to_dict()
                v = v.name if v == PROFILES[v.name] else \
                    {"name": v.name, **{k: x for k, x in v.to_dict().items() if base[k] != x}}
            elif isinstance(v, Path):
                v = str(v)
            out[f.name] = v
        return out

    @classmethod
    def from_params(cls, params: dict) -> RunSpec:
        """The spec :meth:`to_params` wrote (unknown names refused, listing the fields)."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a RunSpec field; fields: {known}")
        params = dict(params)
        prof = params.get("profile", DEFAULT_PROFILE)
        if isinstance(prof, dict):
            prof = dict(prof)
            params["profile"] = get_profile(prof.pop("name"), **_profile_values(prof))
        return cls(**params)

    # -- what the run is --------------------------------------------------------------------------
    @property
    def data_seed(self) -> int:
        """The seed the target's data are drawn with. Every fine-tuning seed of an embedded target
        runs on the same world (``WORLD_SEED``), as every one starts from the same backbone
        (``pretrain_seed``): a run's seed is its fine-tuning seed, so intervals over
        seeds cover fine-tuning variance. A real dataset's validation split is drawn with the seed."""
        return WORLD_SEED if self.target in TARGETS else self.seed

    def protocol(self) -> dict:
        """The fine-tuning recipe of the target, with what the spec overrides: ``augmentation``,
        ``crop`` (pixels the network sees) and ``strip`` (share of rows cut from each frame's
        bottom).

        The recipe belongs to the target's family, not the profile: camera-trap targets take the
        profile's camera-trap augmentation (Norouzzadeh et al.'s at the paper profile) and cut
        their information strip (the study's 100/1536 rows; the embedded worlds their own drawn
        strip); CIFAR has no strip and takes no camera-exposure jitter: at the paper profile the
        usual recipe for ImageNet backbones (upsampled to 256, random 224 crop and flip,
        ``crop_flip``), since the study does not state its own; the embedded CIFAR stand-in keeps
        the profile's. Every part is recorded in the run's identity."""
        p = self.profile
        cifar = self.target in CIFAR_TARGETS
        aug = "crop_flip" if cifar and p.augmentation == "norouzzadeh" else p.augmentation
        return {"augmentation": self.augmentation or aug,
                "crop": self.crop or p.input_size,
                "strip": self.strip if self.strip is not None else default_strip(self.target, p)}

    def config(self) -> FinetuneConfig:
        """The fine-tuning configuration: the profile's settings, with what the spec overrides."""
        p = self.profile
        default = p.finetune_epochs_small if self.target in SMALL_TARGETS else p.finetune_epochs
        proto = self.protocol()
        return FinetuneConfig(epochs=default if self.epochs is None else self.epochs,
                              batch_size=p.batch_size, lr=p.lr if self.lr is None else self.lr,
                              weight_decay=p.weight_decay, seed=self.seed,
                              # the network sees crop, cut from frames stored at resize_size
                              augmentation=proto["augmentation"], crop=proto["crop"],
                              convergence_tolerance=self.convergence_tolerance,
                              precision=self.precision, lr_schedule=p.lr_schedule,
                              monitor_images=p.monitor_images)

    @cached_property
    def data_identity(self) -> dict:
        """What the target's data are made from, read without loading them; a real dataset that
        is not on disk fails here, naming the command that fetches it."""
        return _data_identity(self.target, self.data_options())

    @cached_property
    def identity(self) -> dict:
        """Everything that changes the run's numbers (see the module docstring). For an embedded
        backbone this needs its checkpoint, which a profile without shipped ones pretrains once."""
        return {"target": {"name": self.target, **self.data_identity},
                "backbone": {"name": self.backbone, "weights": _weights_identity(self)},
                "profile": self.profile.to_dict(), "finetune": self.config().identity(),
                "protocol": self.protocol(), "label_fraction": self.label_fraction,
                **({"view": self.view_identity()} if self.view != "frame" else {})}

    @property
    def root(self) -> Path:
        return paths.runs_root(self.runs_root)

    def run_dir(self) -> Path:
        b = Path(self.backbone).stem if is_checkpoint_file(self.backbone) else self.backbone
        if self.pretrain_seed != PRETRAIN_SEED:
            b = f"{b}.pretrain{self.pretrain_seed}"
        leaf = f"seed{self.seed}-e{self.config().epochs}-{fileio.fingerprint(self.identity)[:8]}"
        target = target_key(self.target) if self.by_path else self.target
        return self.root / self.profile.name / target / b / leaf

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


_DEFAULTS = {f.name: f.default for f in fields(RunSpec)}


def _profile_values(overrides: dict) -> dict:
    """JSON's lists back into the tuples a Profile holds."""
    kinds = {f.name: f.type for f in fields(Profile)}
    return {k: tuple(v) if isinstance(v, list) and "tuple" in str(kinds.get(k)) else v
            for k, v in overrides.items()}


def default_strip(target: str, profile: Profile) -> float:
    """The information strip a target's frames lose: the study's 100/1536 for its camera-trap
    sets, the embedded camera-trap worlds' own drawn strip, none for CIFAR and its stand-in, and
    none for a user's own data (their cameras have another strip or none: ask with ``strip``)."""
    if target in CIFAR_TARGETS or target == "syn_cifar" or is_target_path(target):
        return 0.0
    if target in TARGETS:
        return world_strip_fraction(profile)
    return profile.strip_fraction


def _weights_identity(spec: RunSpec) -> dict:
    sha = backbone_sha256(spec.backbone, spec.profile, spec.pretrain_seed)
    if sha is not None:
        return {"sha256": sha}
    w = get_entry(spec.backbone).weights  # a zoo name: its published file and checksum
    return {"url": w.url, "sha256": w.sha256}


def _data_identity(target: str, options: dict | None = None) -> dict:
    """What the target's data are made from, read without loading them; for a target by path,
    its files' hash with every data option (selection, split, class map, image root,
    multi-label policy, strip)."""
    if options is not None:
        return user_target_identity(target, options)
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


def grid_specs(backbones, targets, seeds=None, seeded_pretraining=(), replicates=None,
               **common) -> list[RunSpec]:
    """One spec per cell (targets outer, backbones, then seeds inner), all checked before any is
    run. ``seeds``: a list of fine-tuning seeds (None: ``common``'s ``seed``, default 0);
    ``seeded_pretraining``: backbones whose run with seed ``k`` also starts from pretraining seed
    ``k`` (a replicate of the whole method, so intervals over seeds cover pretraining variance);
    the others start from ``common``'s ``pretrain_seed`` (default 0) in every run.
    ``replicates``: ``{target: n}``, the number of runs of each backbone on that target where it
    differs from ``len(seeds)`` (a key comparison's power, book/power.md): the first ``n`` seeds,
    continued past the largest one where ``n`` is more. ``common``: any other :class:`RunSpec`
    field."""
    seeds = [common.pop("seed", 0)] if seeds is None else list(seeds)
    seeded = set(names(seeded_pretraining, "seeded_pretraining")) if seeded_pretraining else set()
    if seeded and "pretrain_seed" in common:
        raise ValueError(f"pretrain_seed={common['pretrain_seed']!r} and seeded_pretraining="
                         f"{sorted(seeded)} both set the pretraining seed; give one")
    targets = names(targets, "targets")
    replicates = check_replicates(replicates)
    runs = {t: replicate_seeds(seeds, replicates.get(check_target(t))) for t in targets}
    return [RunSpec(b, t, seed=s, **({"pretrain_seed": s} if b in seeded else {}), **common)
            for t in targets for b in names(backbones, "backbones") for s in runs[t]]


def replicate_seeds(seeds, n: int | None) -> list[int]:
    """``n`` fine-tuning seeds: the first ``n`` of ``seeds``, continued past the largest one
    (``[0, 1, 2]`` and 6: ``[0, 1, 2, 3, 4, 5]``); ``None``: ``seeds`` as they are."""
    seeds = list(seeds)
    if n is None:
        return seeds
    check_positive_int(n, "replicates (runs of a target)")
    return (seeds + list(range(max(seeds) + 1, max(seeds) + 1 + n)))[:n]


# -- command line ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser, many: bool = False) -> None:
    """The run options of every command, one per :class:`RunSpec` field (``--pretrain-seed`` for
    ``pretrain_seed``), generated from the fields so that a new field is an option everywhere.
    ``many``: ``--backbones``/``--targets`` (comma-separated or repeated; a path containing a
    comma is given by repeating the option), one run per cell. :func:`specs_from_args` turns
    them into specs; the checks are RunSpec's."""
    for f in fields(RunSpec):
        meta, flag = f.metadata, "--" + f.name.replace("_", "-")
        if f.name in ("backbone", "target"):
            if many:
                parser.add_argument(flag + "s", dest=f.name + "s", action="append", required=True,
                                    help=meta["help"] + "s, comma-separated or repeated")
            else:
                parser.add_argument(flag, required=True, help=meta["help"])
            continue
        default = f.default.name if isinstance(f.default, Profile) else f.default
        parser.add_argument(flag, default=default, help=meta["help"],
                            type=parse_as(meta["parse"]) if meta["parse"] else None)


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    """The specs an :func:`add_arguments` parser describes (one, or one per grid cell)."""
    common = {f.name: getattr(args, f.name) for f in fields(RunSpec)
              if f.name not in ("backbone", "target")}
    if hasattr(args, "backbones"):
        return grid_specs(args.backbones, args.targets, **common)
    return [RunSpec(args.backbone, args.target, **common)]
