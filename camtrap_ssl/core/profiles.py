"""Named scales at which the whole study runs.

One profile fixes everything that trades fidelity for time: how large the embedded world is, the
input resolution, the architecture of the embedded backbones and the epoch budgets. ``tiny`` keeps
the test suite in seconds, ``demo`` builds the book on a 2-core laptop in minutes, and ``paper``
records the study's own settings (SPEC sections 2-4) for the real datasets and checkpoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

# Fine-tuning augmentations (camtrap_ssl.train.augment implements them)
AUGMENTATIONS = ("norouzzadeh", "crop_flip", "demo", "none")
LR_SCHEDULES = ("constant", "cosine")
# Norouzzadeh et al. cut the bottom 100 rows (date, time, temperature, camera) of every
# 2048 x 1536 Serengeti frame before resizing (resize.py of their published code); other
# resolutions cut the same fraction of their height
SERENGETI_STRIP_FRACTION = 100 / 1536


@dataclass(frozen=True)
class Profile:
    name: str
    # input resolution every target is resized to before it enters a network
    input_size: int
    # the embedded world
    source_per_class: int  # labelled source (ImageNet stand-in) images per class, train split
    source_val_per_class: int
    similar_per_class: int  # CIFAR stand-in images per class, train split
    similar_test_per_class: int
    serengeti_images: int  # Serengeti stand-in, all frames (long-tailed)
    ena24_images: int  # ENA24 stand-in (small, near-uniform)
    camtrap_size: tuple[int, int]  # (width, height) of the camera-trap JPEGs as written
    # the embedded backbones
    arch: str  # a registered architecture name of camtrap_ssl.models
    # Views are cropped to this size during pretraining. Below input_size it buys CPU time: at
    # half the side a step costs a quarter, which is what lets SSL see enough epochs on a laptop.
    pretrain_size: int
    # Epochs per pretraining method. The demo's are those its shipped checkpoints were trained for,
    # so another seed repeats their recipe exactly (the SSL methods need more than supervision).
    pretrain_epochs: dict[str, int]
    pretrain_batch_size: int
    # fine-tuning (SPEC section 4 where the profile is `paper`)
    finetune_epochs: int
    finetune_epochs_small: int  # the ENA24 regime
    batch_size: int
    lr: float
    weight_decay: float
    # Studies 1 and 2 run every (backbone, target) cell once per fine-tuning seed and report the
    # mean with a 95 % interval; two seeds are the fewest an interval needs (tiny: tests).
    finetune_seeds: tuple[int, ...] = (0, 1, 2)
    # RQ1 (the "When does SSL transfer better?" page): frames of each domain-distance target
    # (syn_serengeti_d0..d4) and of the unlabelled in-domain pretraining pool
    family_images: int = 0
    pool_images: int = 0
    # study 3 and 4
    images_per_class: int = 10
    featvis_steps: int = 48  # optimisation steps per feature visualization (Study 4)
    # camera-trap preprocessing (SPEC section 4). Frames lose their bottom information strip
    # (``strip_fraction`` of their height; the embedded world cuts its own strip, whose height it
    # knows), are squashed to ``resize_size`` and stored; fine-tuning then crops ``input_size``
    # (random for "norouzzadeh", centred in evaluation). None: ``input_size``, nothing cropped.
    resize_size: int | None = None
    augmentation: str = "demo"
    strip_fraction: float = SERENGETI_STRIP_FRACTION
    # Validation frames of an embedded camera-trap stand-in (target name -> frames in all): its
    # location split's validation frames plus more drawn at the same validation sites (another
    # random stream, data.embedded.load_target), so that one run's top-1 has a sampling error
    # of about 1 point without changing the sites, the training frames or the in-domain pool.
    # Targets not named keep their split as it is. Pairs (a tuple keeps the profile hashable).
    val_images: tuple[tuple[str, int], ...] = ()
    # Fine-tuning schedule (train.finetune): "constant" learning rate (the study's, SPEC
    # section 4) or "cosine" decay to 0 over the run, which ends on a plateau, so the last
    # epoch's weights vary less from seed to seed.
    lr_schedule: str = "constant"
    # Validation images scored after every epoch (a fixed subset, the same for every run of a
    # target): the learning curve and the convergence epoch; the whole validation split is scored
    # after the last epoch. None: the whole split every epoch.
    monitor_images: int | None = None

    def __post_init__(self):
        if self.resize_size is None:
            object.__setattr__(self, "resize_size", self.input_size)
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(f"augmentation={self.augmentation!r}; allowed: {list(AUGMENTATIONS)}")
        if not self.input_size <= self.resize_size:
            raise ValueError(f"input_size={self.input_size} (the crop) must be <= resize_size="
                             f"{self.resize_size}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}; allowed: {list(LR_SCHEDULES)}")
        if self.monitor_images is not None and self.monitor_images < 1:
            raise ValueError(f"monitor_images={self.monitor_images!r} must be None or >= 1")
        if not 0.0 <= self.strip_fraction < 0.5:
            raise ValueError(f"strip_fraction={self.strip_fraction!r} must lie in [0, 0.5)")

    def validation_frames(self, target: str) -> int | None:
        """The validation frames ``val_images`` asks for ``target`` (None: its split as it is)."""
        return dict(self.val_images).get(target)

    def to_dict(self) -> dict:
        return asdict(self)


def _epochs(supervised, simclr, barlowtwins, swav, deepclusterv2) -> dict[str, int]:
    return {"supervised": supervised, "simclr": simclr, "barlowtwins": barlowtwins, "swav": swav,
            "deepclusterv2": deepclusterv2}


PROFILES: dict[str, Profile] = {
    "tiny": Profile(
        name="tiny", input_size=32,
        source_per_class=12, source_val_per_class=4,
        similar_per_class=12, similar_test_per_class=4,
        serengeti_images=160, ena24_images=60, camtrap_size=(64, 48),
        arch="resnet10_w0125", pretrain_size=32, pretrain_epochs=_epochs(4, 4, 4, 4, 4),
        pretrain_batch_size=32,
        finetune_epochs=2, finetune_epochs_small=2, batch_size=32, lr=1e-3, weight_decay=5e-4,
        finetune_seeds=(0, 1), images_per_class=3, featvis_steps=2,
        family_images=160, pool_images=240,
        val_images=(("syn_serengeti", 80),), lr_schedule="cosine", monitor_images=16,
    ),
    # demo fine-tuning: 4 cosine epochs (6 on the small ENA24 stand-in, whose curves flatten by
    # then; the study: 25 and 50): the measured epoch scan (book/power.md) gives the same SSL - SL
    # difference at 4, 6, 8 and 12 epochs and no larger seed-to-seed sd at 4, so the budget goes
    # to replicates instead (studies.params.REPLICATES); Serengeti / CIFAR stand-ins of 1,800
    # frames and 100 images per class, validation brought to 2,500 frames where a key comparison
    # is scored
    "demo": Profile(
        name="demo", input_size=64,
        source_per_class=300, source_val_per_class=60,
        similar_per_class=100, similar_test_per_class=250,
        serengeti_images=1800, ena24_images=480, camtrap_size=(160, 120),
        arch="resnet18_w025", pretrain_size=32, pretrain_epochs=_epochs(15, 80, 80, 50, 50),
        pretrain_batch_size=128,
        finetune_epochs=4, finetune_epochs_small=6, batch_size=64, lr=1e-3, weight_decay=5e-4,
        images_per_class=10, family_images=600, pool_images=6000,
        val_images=(("syn_serengeti", 2500), ("syn_serengeti_d0", 2500), ("syn_serengeti_d4", 2500)),
        lr_schedule="cosine", monitor_images=250,
    ),
    "paper": Profile(
        name="paper", input_size=224,
        source_per_class=0, source_val_per_class=0,
        similar_per_class=0, similar_test_per_class=0,
        serengeti_images=0, ena24_images=0, camtrap_size=(2048, 1536),
        arch="resnet50", pretrain_size=224, pretrain_epochs=_epochs(0, 0, 0, 0, 0), pretrain_batch_size=0,
        finetune_epochs=25, finetune_epochs_small=50, batch_size=128, lr=1e-5, weight_decay=5e-4,
        images_per_class=10, resize_size=256, augmentation="norouzzadeh",
    ),
}


# The profile every entry point uses when none is named: the book's, on a CPU laptop in minutes.
# Signatures and command-line options refer to this name instead of repeating the literal.
DEFAULT_PROFILE = "demo"


def get_profile(name: str | Profile, **overrides) -> Profile:
    """Return the named profile, optionally with some fields replaced.

    Unknown names and unknown override fields fail here, before anything expensive starts.
    """
    if isinstance(name, Profile):
        profile = name
    else:
        if name not in PROFILES:
            raise ValueError(f"profile={name!r} is not a profile; allowed: {sorted(PROFILES)}")
        profile = PROFILES[name]
    if overrides:
        known = set(Profile.__dataclass_fields__)
        bad = sorted(set(overrides) - known)
        if bad:
            raise ValueError(f"unknown profile field(s) {bad}; allowed: {sorted(known)}")
        if "input_size" in overrides and "resize_size" not in overrides \
                and profile.resize_size == profile.input_size:
            overrides = {**overrides, "resize_size": overrides["input_size"]}  # still no crop
        profile = replace(profile, **overrides)
    return profile
