"""Backbones by name: an embedded pretraining method, a checkpoint file, or a zoo entry.

Backbones are named either by a pretraining method (``supervised``, ``simclr``, ``barlowtwins``,
``swav``, ``deepclusterv2``: the embedded backbones of the profile, shipped or pretrained on
first use), by the path of a checkpoint written by ``camtrap-ssl pretrain``, or by a registry name
of :mod:`camtrap_ssl.models` (the paper-scale zoo).

An embedded name says where and how long it was pretrained (RQ1) in timm's ``arch.tag`` style,
one name space with the registry's names: ``<method>[.<tag>]``, the tag joining with ``_``

* ``camtrap``: pretrained without labels on the in-domain pool of camera-trap frames
  (:func:`camtrap_ssl.data.embedded.camtrap_pool`) instead of the source world (SSL methods only);
* ``b25``, ``b50``: the same pretraining run after 25 % or 50 % of its epochs (:data:`BUDGETS`;
  the budget snapshots of :func:`camtrap_ssl.pretrain.loop.pretrain`);

so ``simclr`` (the source world, its whole budget), ``simclr.camtrap``, ``swav.b25``,
``simclr.camtrap_b50`` (:func:`embedded_name`). The shipped checkpoints are
``checkpoints/<profile>_<name>.pt``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import torch

from camtrap_ssl.core import fileio, paths
from camtrap_ssl.core.profiles import DEFAULT_PROFILE, Profile, get_profile
from camtrap_ssl.core.seeding import derive_seed, seeded
from camtrap_ssl.data import synthetic
from camtrap_ssl.data.embedded import camtrap_pool
from camtrap_ssl.models import create_model, get_entry, list_models
from camtrap_ssl.models.weights import load_checkpoint
from camtrap_ssl.pretrain.loop import PretrainConfig, backbone_from_checkpoint, pretrain
from camtrap_ssl.pretrain.methods import FAMILY, METHODS, PARADIGM
from camtrap_ssl.pretrain.probes import probe_table
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import load_finetuned

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"
BUDGETS = (25, 50)  # percent of a method's epochs at which its pretraining run is also kept
POOLS = ("source", "camtrap")  # what an embedded backbone is pretrained on


def embedded_name(method: str, pool: str = "source", budget: int = 100) -> str:
    """The name of an embedded backbone: ``embedded_name("simclr", "camtrap", 50)`` ->
    ``"simclr.camtrap_b50"``; the source world at the whole budget has no tag."""
    tags = ([] if pool == "source" else [pool]) + ([] if budget == 100 else [f"b{budget}"])
    return method + ("." + "_".join(tags) if tags else "")


def parse_embedded(name: str) -> tuple[str, str, int] | None:
    """``(method, pool, budget percent)`` of an embedded backbone name, ``None`` for any other
    name: ``swav`` -> ``("swav", "source", 100)``, ``simclr.camtrap_b50`` ->
    ``("simclr", "camtrap", 50)``. Only the canonical spelling (:func:`embedded_name`) parses, so
    one backbone has one name (and one run folder)."""
    if not isinstance(name, str):
        return None
    method, _, tag = name.partition(".")
    parts = tag.split("_") if tag else []
    pool = next((p for p in parts if p in POOLS and p != "source"), "source")
    budget = next((int(p[1:]) for p in parts if p[:1] == "b" and p[1:] in {str(b) for b in BUDGETS}),
                  100)
    if method not in METHODS or (pool != "source" and method == "supervised"):
        return None
    if embedded_name(method, pool, budget) != name:
        return None
    return method, pool, budget


def embedded_names() -> list[str]:
    """Every embedded backbone name: the methods, their in-domain variants, their budgets."""
    bases = [(m, "source") for m in METHODS] + [(m, "camtrap") for m in METHODS if m != "supervised"]
    return [embedded_name(m, p, b) for b in (100, *BUDGETS) for m, p in bases]


def backbone_names() -> list[str]:
    """Embedded backbones, then every registry name that has published weights."""
    return embedded_names() + [n for n in list_models() if get_entry(n).weights is not None]


def snapshot_epochs(epochs: int) -> dict[int, int]:
    """``{budget percent: epoch}`` of the budget snapshots of an ``epochs``-epoch run (at least 1)."""
    return {b: max(1, round(epochs * b / 100)) for b in BUDGETS}


def is_checkpoint_file(name: str) -> bool:
    """A backbone can also be a pretraining checkpoint written by ``camtrap-ssl pretrain``."""
    return str(name).endswith(".pt") and Path(name).is_file()


def is_backbone(name: str) -> bool:
    return parse_embedded(name) is not None or name in backbone_names() or is_checkpoint_file(name)


def describe_backbone(name: str) -> dict:
    """What a backbone is, always the same keys: ``backbone``, ``method``, ``paradigm`` (SL/SSL),
    ``family`` (instance/cluster, None for SL), ``pretrained_on`` (``source``, ``camtrap``, or
    ``imagenet`` for the zoo) and ``budget_percent`` (of its pretraining epochs)."""
    parsed = parse_embedded(name)
    if is_checkpoint_file(name):
        rec = load_checkpoint(name)["record"]
        method = rec["config"]["method"]
        pool = "camtrap" if (rec.get("data") or {}).get("world") == "serengeti pool" else "source"
        where, budget = pool, 100
    elif parsed:
        method, where, budget = parsed
    else:  # the zoo: the registry's entry knows its method, paradigm and family
        e = get_entry(name)
        return {"backbone": name, "method": e.method, "paradigm": e.paradigm, "family": e.family,
                "pretrained_on": "imagenet", "budget_percent": 100}
    return {"backbone": name, "method": method, "paradigm": PARADIGM[method],
            "family": FAMILY[method], "pretrained_on": where, "budget_percent": budget}


def snapshot_path(out: str | Path, budget: int) -> Path:
    """Where the ``budget`` % snapshot of the run writing ``out`` goes, its tag added as in
    :func:`embedded_name`: ``demo_swav.pt`` -> ``demo_swav.b25.pt``, ``demo_simclr.camtrap.pt``
    -> ``demo_simclr.camtrap_b25.pt``."""
    out = Path(out)
    if budget == 100:
        return out
    return out.with_name(f"{out.stem}{'_' if '.' in out.stem else '.'}b{budget}{out.suffix}")


def backbone_checkpoint(name: str, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0,
                        retrain: bool = False, progress: bool = True) -> Path:
    """Path of an embedded backbone's checkpoint: the shipped one, or pretrained now and cached.

    The project ships the demo profile's backbones (``camtrap_ssl/checkpoints/demo_<name>.pt``),
    produced by ``camtrap-ssl pretrain`` with their record inside; ``retrain=True`` pretrains from
    scratch instead (minutes per method on a CPU). Other profiles pretrain on first use; a budget
    snapshot comes from the whole run, which writes every snapshot beside its final checkpoint.
    """
    profile = get_profile(profile)
    method, pool, _ = _parsed_embedded(name)
    wanted, out = _locations(name, profile, seed)
    if wanted.exists() and not retrain:
        return wanted
    if wanted.parent == SHIPPED:  # retraining a shipped one: into the cache, never over it
        wanted, out = _locations(name, profile, seed, cache=True)
    pretrain_backbone(method, profile, seed, out, progress=progress, pool=pool)
    return wanted


def is_pretrained(name: str, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0) -> bool:
    """Whether an embedded backbone's checkpoint exists (shipped or cached): no pretraining needed."""
    return _locations(name, get_profile(profile), seed)[0].exists()


def _parsed_embedded(name: str) -> tuple[str, str, int]:
    parsed = parse_embedded(name)
    if parsed is None:
        raise ValueError(f"backbone={name!r} is not an embedded backbone; allowed: {embedded_names()}")
    return parsed


def _locations(name: str, profile: Profile, seed: int, cache: bool = False) -> tuple[Path, Path]:
    """(the checkpoint of ``name``, the final checkpoint of the pretraining run that writes it):
    the shipped file for seed 0 where there is one, else in the cache."""
    method, pool, budget = _parsed_embedded(name)
    shipped = SHIPPED / f"{profile.name}_{name}.pt"
    if seed == 0 and shipped.exists() and not cache:
        return shipped, SHIPPED / f"{profile.name}_{embedded_name(method, pool)}.pt"
    out = paths.cache_dir() / "backbones" / f"seed{seed}" / f"{profile.name}_{embedded_name(method, pool)}.pt"
    return snapshot_path(out, budget), out


def pretrain_backbone(method: str, profile: str | Profile, seed: int, out: str | Path,
                      epochs: int | None = None, max_seconds: float | None = None,
                      progress: bool = True, pool: str = "source") -> Path:
    """Pretrain one embedded backbone on the labelled source world (labels used by SL only) or,
    ``pool="camtrap"``, without labels on the in-domain camera-trap pool; the budget snapshots
    (:data:`BUDGETS`) are written beside ``out`` (:func:`snapshot_path`)."""
    profile = get_profile(profile)
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}; allowed: {list(POOLS)}")
    if pool == "camtrap" and method == "supervised":
        raise ValueError("method='supervised' needs labels; the camera-trap pool is unlabelled "
                         "(pool='camtrap' takes the SSL methods)")
    epochs = epochs or profile.pretrain_epochs[method]
    if pool == "source":
        world = synthetic.source_world(profile, seed=seed)
        images, labels, classes = world.images_train, world.labels_train, list(world.classes)
        identity = {"world": "source", "profile": profile.name, "seed": seed,
                    "n_images": int(len(images)), "classes": classes}
    else:
        images, identity = camtrap_pool(profile, seed=seed, progress=progress)
        labels, classes = None, None
    cfg = PretrainConfig(method=method, arch=profile.arch, epochs=epochs,
                         batch_size=min(profile.pretrain_batch_size, len(images)),
                         seed=seed, input_size=profile.pretrain_size)
    snapshots = {snapshot_path(out, b): e for b, e in snapshot_epochs(epochs).items()}
    return pretrain(cfg, images, labels, out, num_classes=len(classes) if classes else None,
                    progress=progress, data_identity=identity, max_seconds=max_seconds,
                    snapshots=snapshots)


def probe_backbone(checkpoint: str | Path, profile: str | Profile, seed: int = 0) -> dict:
    """Linear and k-NN probes of a checkpoint on held-out source images, beside raw pixels and
    the same architecture at random initialization (the evidence that pretraining learned)."""
    profile = get_profile(profile)
    world = synthetic.source_world(profile, seed=seed)
    trained = backbone_from_checkpoint(checkpoint)
    with seeded(seed):  # the draw the shipped records' probe scores were measured with
        random_init = create_model(trained.pretrained_record["config"]["arch"], num_classes=None)
    table = probe_table({"pretrained": trained, "random init": random_init},
                        world.tensors("train"), world.tensors("val"))
    return {row: {k: float(v) for k, v in vals.items()} for row, vals in table.iterrows()}


def probe_records(methods=METHODS, profile: str | Profile = DEFAULT_PROFILE, seed: int = 0):
    """The probe table of the embedded backbones: one row per method plus the two baselines.

    ``margin over baselines`` is the smaller of the two probes' leads over the better of raw
    pixels and random initialization; ``learned`` says it is positive.

    Shipped checkpoints carry their probe scores in their record (measured when they were made);
    a checkpoint without them (a profile pretrained on first use) is probed now.
    """
    rows = {}
    for method in methods:
        path = backbone_checkpoint(method, profile, seed, progress=False)
        rec = load_checkpoint(path)["record"]
        probes = rec.get("probes") or probe_backbone(path, profile, seed)
        rows.setdefault("raw pixels", probes["raw pixels"])
        rows.setdefault("random init", probes["random init"])
        rows[method] = {**probes["pretrained"], "epochs": rec["epochs_done"],
                        "pretrain minutes": round(rec["wall_seconds"] / 60, 1)}
    order = ["raw pixels", "random init", *methods]
    table = pd.DataFrame.from_dict(rows, orient="index").loc[order]
    # The evidence the book states must come from the numbers: a backbone learned if both of its
    # probes beat the better baseline, and by how much (in points of top-1) it did.
    baseline = table.loc[["raw pixels", "random init"], ["linear", "knn"]].max()
    margin = (table[["linear", "knn"]] - baseline).min(axis=1).loc[list(methods)]
    table["margin over baselines"] = margin
    table["learned"] = margin > 0
    return table.rename(columns={"linear": "linear probe", "knn": "k-NN probe"})


def pretrain_and_probe(method: str, profile: str | Profile, seed: int, out: str | Path,
                       epochs: int | None = None, max_seconds: float | None = None,
                       probe: bool = True, pool: str = "source") -> dict:
    """Pretrain, probe, and store the probe scores in the checkpoint's record (and in each budget
    snapshot's); return the final record."""
    out = pretrain_backbone(method, profile, seed, out, epochs=epochs, max_seconds=max_seconds,
                            pool=pool)
    command = "camtrap-ssl " + " ".join(sys.argv[1:]) if sys.argv else ""
    for path in [snapshot_path(out, b) for b in BUDGETS] + [out]:
        if not path.exists():  # a snapshot past a max_seconds stop
            continue
        ckpt = load_checkpoint(path)
        ckpt["record"]["command"] = command
        if probe:
            ckpt["record"]["probes"] = probe_backbone(path, profile, seed)
        fileio.atomic_torch_save(ckpt, path)
    return ckpt["record"]


# The default pretraining seed of the embedded backbones a fine-tuning run starts from: the
# shipped checkpoints are seed 0. RunSpec.pretrain_seed asks for another pretraining run, so that
# intervals can cover pretraining variance as well as fine-tuning variance.
PRETRAIN_SEED = 0


def create_backbone(name: str | Path, num_classes: int | None = None,
                    profile: str | Profile = DEFAULT_PROFILE, seed: int = 0,
                    pretrain_seed: int = PRETRAIN_SEED) -> torch.nn.Module:
    """A model from anything a user names, the one function that builds one:

    * a finished fine-tuning run (its directory or its ``checkpoint.pt``): the fine-tuned
      classifier, in eval mode, with ``class_names`` (the other arguments are the run's own);
    * an embedded backbone (``simclr``, ``simclr.camtrap_b50``, ...: the one pretrained with
      ``pretrain_seed``), a pretraining checkpoint file (``.pt``), or a registry name (the zoo):
      the pretrained backbone with a fresh ``num_classes`` head (``None``: no head).

    The fresh head is initialised from ``seed`` alone (:func:`camtrap_ssl.core.seeding.seeded`),
    so the same run starts from the same weights in every process.
    """
    if Path(name).is_dir() or Path(name).name == rundir.CHECKPOINT:
        return _finetuned(name)
    name = str(name)
    embedded = parse_embedded(name) is not None
    path = backbone_checkpoint(name, profile, pretrain_seed) if embedded else name
    with seeded(derive_seed(seed, "head")):
        if is_checkpoint_file(name) or embedded:
            model = backbone_from_checkpoint(path, num_classes=num_classes)
        else:
            model = create_model(name, pretrained=True, num_classes=num_classes)
    model.backbone_name = name
    return model


def _finetuned(path) -> torch.nn.Module:
    """The fine-tuned classifier of a finished run, rebuilt from its record alone."""
    run = rundir.finished_run(path)
    params = run.params()
    spec = params.get("spec", {})
    model = create_backbone(params["backbone"]["backbone"], params["num_classes"],
                            params["profile"], params["finetune"]["seed"],
                            spec.get("pretrain_seed", PRETRAIN_SEED))
    model = load_finetuned(run.path, model)
    model.class_names = params["classes"]
    model.run_dir = run.path
    return model


def backbone_sha256(backbone: str, profile: Profile, seed: int) -> str | None:
    """Content hash of the checkpoint an embedded backbone or a checkpoint file loads; ``None``
    for zoo names (their downloads are checked against published checksums instead)."""
    if is_checkpoint_file(backbone):
        return fileio.sha256_file(backbone)
    if parse_embedded(backbone) is not None:
        return fileio.sha256_file(backbone_checkpoint(backbone, profile, seed, progress=False))
    return None
