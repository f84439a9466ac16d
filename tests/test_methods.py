"""The method table and the per-method hooks: one classification of each method, a loop that names none."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch

from camtrap_ssl.models import ModelEntry, get_entry, resnet
from camtrap_ssl.models.registry import METHOD_TABLE
from camtrap_ssl.pretrain import loop, methods
from camtrap_ssl.pretrain.loop import PretrainConfig, pretrain


#: SPEC section 3's classification of the study's rows (registry name -> (paradigm, family)),
#: written out here rather than read from METHOD_TABLE, so that a wrong row in the table fails
SPEC_ROWS = {
    "supervised_r50": ("SL", None), "supervised_r152": ("SL", None),
    **{f"simclrv2_{a}_sk{k}": ("SSL", "instance") for a in ("r50_1x", "r50_2x", "r152_1x")
       for k in (0, 1)},
    "swav_r50": ("SSL", "cluster"), "swav_r50w2": ("SSL", "cluster"),
    "deepclusterv2_r50": ("SSL", "cluster"), "barlowtwins_r50": ("SSL", "instance"),
}
#: the embedded stand-ins of the same methods (SimCLR for SimCLRv2)
EMBEDDED = {"supervised": ("SL", None), "simclr": ("SSL", "instance"),
            "barlowtwins": ("SSL", "instance"), "swav": ("SSL", "cluster"),
            "deepclusterv2": ("SSL", "cluster")}


@pytest.mark.parametrize("name", sorted(SPEC_ROWS))
def test_each_study_backbone_has_the_specs_paradigm_and_family(name):
    e = get_entry(name)
    assert (e.paradigm, e.family) == SPEC_ROWS[name], (name, e.method)


def test_each_embedded_method_has_the_specs_paradigm_and_family():
    assert set(methods.METHODS) == set(EMBEDDED)
    for m, expected in EMBEDDED.items():
        assert (methods.PARADIGM[m], methods.FAMILY[m]) == expected, m
    # the classification itself: SL has no family, SSL has one of the two
    assert {p for p, _ in METHOD_TABLE.values()} == {"SL", "SSL"}
    for p, f in METHOD_TABLE.values():
        assert (f is None) == (p == "SL")
    assert {f for _, f in METHOD_TABLE.values()} == {None, "instance", "cluster"}


def test_an_entry_takes_paradigm_and_family_from_its_method_and_refuses_contradictions():
    kw = dict(builder=resnet, arch={"depth": 10}, num_features=512)
    assert ModelEntry("t", method="swav", **kw).family == "cluster"
    assert ModelEntry("t", method="barlowtwins", paradigm="SSL", **kw).family == "instance"
    with pytest.raises(ValueError, match=r"t: method 'supervised' is \(SL, None\)"):
        ModelEntry("t", method="supervised", paradigm="SSL", family="cluster", **kw)
    with pytest.raises(ValueError, match="method='byol' is not in METHOD_TABLE; allowed: .*swav"):
        ModelEntry("t", method="byol", **kw)


def test_the_loop_names_no_method():
    """No method's name (as a string) nor any Objective class appears in the loop's code."""
    tree = ast.parse(Path(loop.__file__).read_text())
    classes = {c.__name__ for c in methods.OBJECTIVES.values()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert node.value not in methods.METHODS, f"loop.py line {node.lineno}: {node.value!r}"
        if isinstance(node, (ast.Name, ast.alias)):
            name = node.id if isinstance(node, ast.Name) else node.name
            assert name not in classes, f"loop.py line {node.lineno}: {name}"


def _data(n=64, size=32):
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8), np.arange(n) % 4


def test_a_method_that_needs_labels_is_refused_without_them_before_any_training(tmp_path):
    images, _ = _data()
    cfg = PretrainConfig(method="supervised", arch="resnet10_w0125", epochs=1, batch_size=32,
                         input_size=32)
    with pytest.raises(ValueError, match="method='supervised' needs labels"):
        pretrain(cfg, images, None, tmp_path / "x.pt", progress=False)
    assert not list(tmp_path.iterdir())
    assert [m for m in methods.METHODS if methods.objective_class(m).needs_labels] == ["supervised"]


def test_epoch_hook_runs_before_every_epoch_and_deepcluster_fills_then_reclusters_its_bank(
        tmp_path, monkeypatch):
    images, labels = _data()
    seen = []
    real = methods.DeepClusterV2.on_epoch_start

    def spy(self, backbone, imgs, epoch, cfg, generator):
        bank_before = self.bank.clone()
        real(self, backbone, imgs, epoch, cfg, generator)
        seen.append((epoch, self.bank.clone(), bank_before, self.centroids.clone(),
                     self.assignments.clone(), self.training, backbone.training))

    monkeypatch.setattr(methods.DeepClusterV2, "on_epoch_start", spy)
    cfg = PretrainConfig(method="deepclusterv2", arch="resnet10_w0125", epochs=2, batch_size=32,
                         input_size=32)
    pretrain(cfg, images, labels, tmp_path / "dc.pt", progress=False)
    assert [s[0] for s in seen] == [0, 1]
    for epoch, bank, before, centroids, assignments, obj_training, bb_training in seen:
        torch.testing.assert_close(bank.norm(dim=1), torch.ones(len(images)))
        torch.testing.assert_close(centroids.norm(dim=1), torch.ones(len(centroids)))
        assert torch.equal(assignments, (bank @ centroids.T).argmax(1))  # each image's nearest centroid
        assert obj_training and bb_training  # the hook leaves both modules in training mode
    assert not torch.equal(seen[0][1], seen[0][2])  # epoch 0 replaced the random bank
    assert torch.equal(seen[1][1], seen[1][2])  # later epochs keep the bank the steps wrote


def test_the_base_hook_does_nothing_and_an_unknown_method_names_the_allowed_ones():
    obj = methods.make_objective("simclr", 64, 0, 8)
    before = {k: v.clone() for k, v in obj.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    obj.on_epoch_start(None, None, 0, None, g)
    assert all(torch.equal(v, obj.state_dict()[k]) for k, v in before.items())
    assert torch.equal(g.get_state(), state)
    with pytest.raises(ValueError, match=r"'byol' is not a pretraining method; allowed: \['supervised'"):
        methods.make_objective("byol", 64, 0, 8)
