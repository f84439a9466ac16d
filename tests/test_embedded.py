import pytest
import torch

from camtrap_ssl.core import fileio
from camtrap_ssl.data import embedded
from camtrap_ssl.experiments import backbones, finetuning, grid
from camtrap_ssl.experiments.spec import RunSpec
from camtrap_ssl.pretrain import methods
from camtrap_ssl.train import rundir


@pytest.mark.parametrize("name", embedded.TARGETS)
def test_targets_come_at_the_profile_size_with_valid_labels(name):
    t = embedded.load_target(name, "tiny")
    x, y = t.train[0]
    assert x.shape == (3, 32, 32) and 0 <= x.min() and x.max() <= 1
    for ds in (t.train, t.val):
        assert len(ds) > 0 and int(ds.labels.max()) < len(t.classes)


def test_camera_trap_split_keeps_sequences_and_locations_apart():
    from camtrap_ssl.data import cct, splits, synthetic
    index = cct.load_cct(synthetic.camtrap_world("serengeti", "tiny"))
    parts = splits.split(index, by="location", val_fraction=0.25, seed=0)
    loc = lambda ids: {index.images[i]["location"] for i in ids}  # noqa: E731
    seq = lambda ids: {index.images[i]["seq_id"] for i in ids}  # noqa: E731
    assert not loc(parts.train) & loc(parts.val)
    assert not seq(parts.train) & seq(parts.val)


def test_masks_cover_the_animals_of_camera_trap_targets():
    t = embedded.load_target("syn_serengeti", "tiny", masks=True)
    assert t.val.masks.shape[0] == len(t.val) and t.val.masks.shape[-1] == 32
    empty = t.classes.index("empty")
    # empty frames have empty masks; most animal frames show their animal
    assert t.val.masks[t.val.labels == empty].sum() == 0
    animal = t.val.labels != empty
    assert (t.val.masks[animal].flatten(1).sum(1) > 0).float().mean() > 0.5


def test_unknown_names_are_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="syn_serengeti"):
        embedded.load_target("mnist", "tiny")
    with pytest.raises(ValueError, match="supervised"):
        finetuning.finetune_run(RunSpec("alexnet", "syn_cifar", "tiny"))


def test_finetune_run_records_provenance_and_is_not_repeated(tmp_path):
    spec = RunSpec("supervised", "syn_cifar", "tiny", runs_root=tmp_path, epochs=1)
    summary, rd = finetuning.finetune_run(spec, progress=False)
    params = rundir.RunDir(rd).params()
    assert params["backbone"]["paradigm"] == "SL" and params["stands_in_for"] == "cifar10"
    assert params["pretraining"]["config"]["method"] == "supervised"
    assert params["environment"]["code_version"]
    mtime = (rd / "summary.json").stat().st_mtime
    again, _ = finetuning.finetune_run(spec)
    assert again == summary and (rd / "summary.json").stat().st_mtime == mtime
    model = backbones.create_backbone(rd)  # the fine-tuned classifier of the run
    assert model.class_names == params["classes"] and not model.training
    x = torch.stack([embedded.load_target("syn_cifar", "tiny").val[i][0] for i in range(4)])
    assert model(x).shape == (4, len(params["classes"]))


def test_shipped_demo_backbones_carry_their_record():
    """Each shipped backbone says how it was made and how well it probes (shown in Study 2)."""
    import torch as T

    from camtrap_ssl.pretrain.methods import METHODS
    paths = {p.stem: p for p in backbones.SHIPPED.glob("demo_*.pt")}
    # every method at its full budget and at each budget snapshot; in-domain variants may be added
    wanted = {f"demo_{backbones.embedded_name(m, budget=b)}" for m in METHODS
              for b in (100, *backbones.BUDGETS)}
    assert wanted <= set(paths)
    unnamed = [n for n in paths if backbones.parse_embedded(n.removeprefix("demo_")) is None]
    assert unnamed == []  # every shipped file is named by its backbone's arch.tag name
    for name, p in paths.items():
        ckpt = T.load(p, map_location="cpu", weights_only=True)
        rec = ckpt["record"]
        assert rec["command"].startswith("camtrap-ssl pretrain") and f"--method {rec['config']['method']}" in rec["command"]
        assert rec["code_version"] != "unknown" and rec["epochs_done"] >= 1 and rec["wall_seconds"] > 0
        assert set(rec["probes"]) == {"raw pixels", "random init", "pretrained"}
        assert all(0 <= v <= 1 for row in rec["probes"].values() for v in row.values())
        # exactly the recipe another seed retrains with (make book SEED=k), apart from the seed
        from camtrap_ssl.core.profiles import get_profile
        demo = get_profile("demo")
        from dataclasses import asdict

        from camtrap_ssl.pretrain.loop import PretrainConfig
        method, pool, budget = backbones.parse_embedded(name.removeprefix("demo_"))
        assert rec["config"]["method"] == method
        assert rec["config"] == asdict(PretrainConfig(
            method=method, arch=demo.arch, epochs=demo.pretrain_epochs[method],
            batch_size=demo.pretrain_batch_size, seed=0, input_size=demo.pretrain_size,
            precision=rec["config"]["precision"]))
        assert rec["config"]["precision"] in ("bf16", "fp32")  # resolved, never "auto"
        epochs = backbones.snapshot_epochs(rec["config"]["epochs"]).get(budget, rec["config"]["epochs"])
        assert rec["epochs_done"] == epochs
        assert rec["data"]["world"] == ("source" if pool == "source" else "serengeti pool")
        model = backbones.create_backbone(name.removeprefix("demo_"), 3, "demo")
        assert model(T.rand(2, 3, 64, 64)).shape == (2, 3)  # the weights fit the demo architecture


def test_every_shipped_demo_backbone_beats_both_baselines_by_a_clear_margin():
    """Issue 3's evidence that each method learns, on the shipped checkpoints' recorded probes."""
    table = backbones.probe_records(profile="demo")
    base = table.loc[["raw pixels", "random init"], ["linear probe", "k-NN probe"]].max()
    for method in methods.METHODS:
        leads = table.loc[method, ["linear probe", "k-NN probe"]] - base
        assert table.loc[method, "margin over baselines"] == pytest.approx(leads.min())
        assert table.loc[method, "learned"]
        assert leads.min() >= 0.05, f"{method} leads the better baseline by only {leads.min():.3f}"


def test_the_best_shipped_ssl_backbone_probes_within_ten_points_of_supervised():
    """Issue 13: an SSL - SL difference must not be mostly "these SSL backbones are undertrained"."""
    table = backbones.probe_records(profile="demo")
    ssl = [m for m in methods.METHODS if m != "supervised"]
    gap = table.loc["supervised", "linear probe"] - table.loc[ssl, "linear probe"].max()
    assert gap <= 0.10, f"the best SSL linear probe is {100 * gap:.1f} points below supervised"


def test_a_pretraining_checkpoint_file_is_a_backbone(tmp_path):
    ckpt = backbones.backbone_checkpoint("simclr", "tiny")
    own = tmp_path / "my_simclr.pt"
    own.write_bytes(ckpt.read_bytes())
    assert backbones.describe_backbone(str(own))["paradigm"] == "SSL"
    summary, rd = finetuning.finetune_run(RunSpec(str(own), "syn_cifar", "tiny", epochs=1,
                                                  runs_root=tmp_path / "runs"), progress=False)
    assert rd.parent.name == "my_simclr" and (rd / "summary.json").exists()
    assert rundir.RunDir(rd).params()["identity"]["backbone"]["weights"]["sha256"] == \
        fileio.sha256_file(own)
    from camtrap_ssl.studies import params as studies
    studies.check_request("3", {"ssl_backbone": str(own)})
    with pytest.raises(ValueError, match="ssl_backbone"):
        studies.check_request("3", {"ssl_backbone": str(tmp_path / "missing.pt")})


def test_a_run_made_from_a_replaced_backbone_is_kept_and_never_reused(tmp_path, monkeypatch):
    """A backbone keeps its name when its checkpoint changes; the weights' hash is part of the
    run's identity, so the new weights train into a new directory and the old run stays."""
    ckpt = tmp_path / "simclr.pt"
    ckpt.write_bytes(backbones.backbone_checkpoint("simclr", "tiny").read_bytes())
    monkeypatch.setattr(backbones, "backbone_checkpoint", lambda *a, **k: ckpt)
    root = tmp_path / "runs"
    spec = RunSpec("simclr", "syn_cifar", "tiny", runs_root=root, epochs=1)
    first, rd = finetuning.finetune_run(spec, progress=False)
    again, rd_again = finetuning.finetune_run(RunSpec(**spec.to_params()), progress=False)
    assert rd_again == rd and again == first
    old_files = {p.name: p.read_bytes() for p in rd.iterdir() if p.is_file()}

    state = torch.load(ckpt, weights_only=True)
    state["record"]["wall_seconds"] += 1  # same name, other content: a new version of the backbone
    torch.save(state, ckpt)
    assert not grid.plan_grid(["simclr"], ["syn_cifar"], profile="tiny", runs_root=root,
                              epochs=1)["complete"][0]
    _, rd_new = finetuning.finetune_run(RunSpec(**spec.to_params()), progress=False)
    assert rd_new != rd and rd_new.parent == rd.parent and rundir.RunDir(rd_new).is_complete
    assert rundir.RunDir(rd_new).params()["pretraining"]["sha256"] == fileio.sha256_file(ckpt)
    assert {p.name: p.read_bytes() for p in rd.iterdir() if p.is_file()} == old_files  # kept


def test_a_finished_run_is_returned_only_for_exactly_what_was_asked(tmp_path):
    """Issue 14: fewer epochs after a longer run must train them, not report the longer run."""
    run = lambda **kw: finetuning.finetune_run(  # noqa: E731
        RunSpec("supervised", "syn_cifar", "tiny", runs_root=tmp_path, **kw), progress=False)
    long, rd_long = run(epochs=2)
    short, rd_short = run(epochs=1)
    assert rd_short != rd_long and short["epochs"] == 1
    assert len(rundir.RunDir(rd_short).metrics()) == 1 and len(rundir.RunDir(rd_long).metrics()) == 2
    _, rd_lr = run(epochs=1, lr=5e-4)
    assert rd_lr not in (rd_long, rd_short)
    assert rundir.RunDir(rd_lr).params()["finetune"]["lr"] == 5e-4
    stamp = (rd_long / rundir.SUMMARY).stat().st_mtime_ns
    assert run(epochs=2) == (long, rd_long)  # the same request again: reused, untouched
    assert run() == (long, rd_long)  # the profile's budget (2) by default is the same run
    assert (rd_long / rundir.SUMMARY).stat().st_mtime_ns == stamp
    reread, rd = run(epochs=2, convergence_tolerance=100.0)  # not identity: reread, not retrained
    assert rd == rd_long and reread["convergence_epoch"] == 1
    assert (rd_long / rundir.SUMMARY).stat().st_mtime_ns == stamp


def test_camera_trap_frames_lose_their_timestamp_strip():
    """Each loaded frame is its JPEG without the generator's strip rows, squashed to the size."""
    import numpy as np
    from PIL import Image

    from camtrap_ssl.core.profiles import get_profile
    from camtrap_ssl.data import cct, splits, synthetic
    from camtrap_ssl.data.synthetic.scenes import strip_height

    p = get_profile("tiny")
    h = p.camtrap_size[1]
    assert round(embedded.world_strip_fraction(p) * h) == strip_height(h)
    index = cct.load_cct(synthetic.camtrap_world("serengeti", "tiny"))
    t = embedded.load_target("syn_serengeti", "tiny")
    assert f"bottom {strip_height(h)} of {h} rows" in t.identity["strip"]
    train = set(splits.split(index, by="location", val_fraction=0.25, seed=0).train)
    first = next(i for i, _ in index.samples if i in train)  # rows follow the label table
    with Image.open(index.path_of(first)) as im:
        frame = np.asarray(im.convert("RGB"))
    assert (frame[h - strip_height(h):] < 16).mean() > 0.7  # the strip is there in the file (black)
    scene = Image.fromarray(frame[: h - strip_height(h)]).resize((32, 32), Image.Resampling.BILINEAR)
    assert np.array_equal(t.train.images[0].permute(1, 2, 0).numpy(), np.asarray(scene))


def test_load_target_decodes_the_jpegs_once(monkeypatch):
    import os

    from camtrap_ssl.core import paths
    from camtrap_ssl.data import cct, synthetic

    first = embedded.load_target("syn_ena24", "tiny", masks=True)

    def boom(*a, **k):
        raise AssertionError("decoded again although the decoded cache was current")

    monkeypatch.setattr(cct, "decode_image", boom)
    again = embedded.load_target("syn_ena24", "tiny", masks=True)
    for a, b in ((first.train, again.train), (first.val, again.val)):
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
        assert torch.equal(a.masks, b.masks)
    assert again.identity == first.identity
    # a frame rewritten on disk (new mtime) is decoded afresh, never served from the cache
    index = cct.load_cct(synthetic.camtrap_world("ena24", "tiny"))
    frame = index.path_of(index.samples[0][0])
    stat = frame.stat()
    monkeypatch.undo()
    cached = lambda: set((paths.cache_dir() / "targets").glob("ena24-32px-*.npz"))  # noqa: E731
    before = cached()
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    embedded.load_target("syn_ena24", "tiny", masks=True)
    assert len(cached() - before) == 1


def test_describe_backbone_has_one_shape_for_every_name_a_user_can_give(tmp_path):
    """Embedded names, zoo names and checkpoint files: the same keys, SL/SSL from the right table."""
    own = tmp_path / "mine.pt"
    own.write_bytes(backbones.backbone_checkpoint("swav", "tiny").read_bytes())
    names = backbones.backbone_names() + [str(own)]
    shapes = {tuple(sorted(backbones.describe_backbone(n))) for n in names}
    assert len(names) > 30 and len(shapes) == 1
    d = backbones.describe_backbone("simclrv2_r50_1x_sk1")
    assert (d["paradigm"], d["family"], d["pretrained_on"]) == ("SSL", "instance", "imagenet")
    assert backbones.describe_backbone("simclr.camtrap_b25")["pretrained_on"] == "camtrap"
    assert backbones.describe_backbone(str(own))["method"] == "swav"
