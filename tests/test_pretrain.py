import numpy as np
import pytest
import torch

from camtrap_ssl.models import create_model
from camtrap_ssl.pretrain.loop import PretrainConfig, backbone_from_checkpoint, pretrain
from camtrap_ssl.pretrain.methods import (
    METHODS,
    SwAV,
    make_objective,
    sinkhorn_codes,
    spherical_kmeans,
)
from camtrap_ssl.pretrain.views import recipe_for


def _data(n=64, size=32, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    base = rng.integers(0, 255, (classes, 3), dtype=np.uint8)
    images = np.repeat(np.repeat(base[labels][:, None, None, :], size, 1), size, 2)
    noise = rng.integers(0, 40, images.shape, dtype=np.uint8)
    return (images // 2 + noise).astype(np.uint8), labels


@pytest.mark.parametrize("method", METHODS)
def test_every_objective_gives_a_finite_loss_whose_gradient_reaches_the_backbone(method):
    torch.manual_seed(0)
    backbone = create_model("resnet10_w0125")
    objective = make_objective(method, backbone.num_features, 4, 16)
    x = torch.rand(16, 3, 32, 32)
    views = recipe_for(method, 32)(x, torch.Generator().manual_seed(0))
    loss = objective(backbone, views, torch.arange(16) % 4, torch.arange(16))
    loss.backward()
    assert torch.isfinite(loss)
    assert backbone.conv1.weight.grad.abs().sum() > 0


def test_unknown_method_names_the_allowed_ones():
    with pytest.raises(ValueError, match="simclr"):
        PretrainConfig(method="byol", arch="resnet10_w0125", epochs=1)


def test_sinkhorn_codes_match_lightly_where_it_is_stable_and_stay_finite_where_it_overflows():
    from lightly.loss.swav_loss import sinkhorn

    g = torch.Generator().manual_seed(0)
    scores = torch.nn.functional.normalize(torch.randn(32, 8, generator=g), dim=1) @ \
        torch.nn.functional.normalize(torch.randn(16, 8, generator=g), dim=1).T  # cosines (32, 16)
    torch.testing.assert_close(sinkhorn_codes(scores, 0.05), sinkhorn(scores, epsilon=0.05))
    assert not torch.isfinite(sinkhorn(scores, epsilon=0.005)).all()  # exp(200) overflows float32
    codes = sinkhorn_codes(scores, 0.005)
    assert torch.isfinite(codes).all()
    torch.testing.assert_close(codes.sum(1), torch.ones(32))
    # run to convergence, every prototype gets an equal share of the batch
    balanced = sinkhorn_codes(scores, 0.05, iterations=100).sum(0)
    torch.testing.assert_close(balanced, torch.full((16,), 2.0), rtol=1e-3, atol=1e-3)
    # a small epsilon gives near one-hot codes: the sharp targets that keep SwAV from collapsing
    assert codes.max(1).values.mean() > 0.9 > sinkhorn_codes(scores, 0.05).max(1).values.mean()


def test_swav_prototypes_stay_frozen_for_frozen_steps_then_learn():
    torch.manual_seed(0)
    backbone = create_model("resnet10_w0125")
    objective = SwAV(backbone.num_features, n_prototypes=16, frozen_steps=1)
    views = recipe_for("swav", 32)(torch.rand(8, 3, 32, 32), torch.Generator().manual_seed(0))
    for step in range(2):
        objective.prototypes.weight.grad = None
        objective(backbone, views, None, torch.arange(8)).backward()
        learned = objective.prototypes.weight.grad is not None
        assert learned == (step >= 1)
    # unit-norm prototypes, and no bias to shift every score alike
    torch.testing.assert_close(objective.prototypes.weight.norm(dim=1), torch.ones(16))
    assert objective.prototypes.bias is None


def test_spherical_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.eye(3, 8), dim=1)
    x = torch.nn.functional.normalize(centres.repeat_interleave(20, 0) + 0.05 * torch.randn(60, 8, generator=g), dim=1)
    c = spherical_kmeans(x, 3, 10, g)
    assign = (x @ c.T).argmax(1)
    # every true cluster maps to exactly one found cluster
    assert all(len(set(assign[i * 20:(i + 1) * 20].tolist())) == 1 for i in range(3))
    assert len(set(assign.tolist())) == 3


def test_interrupted_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch):
    images, labels = _data()
    cfg = PretrainConfig(method="simclr", arch="resnet10_w0125", epochs=2, batch_size=32, input_size=32)
    full = torch.load(pretrain(cfg, images, labels, tmp_path / "full.pt", progress=False), weights_only=True)

    from camtrap_ssl.pretrain import loop
    real_save, calls = loop.fileio.atomic_torch_save, []

    def dies_after_first_epoch(obj, path):
        calls.append(path)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")
        return real_save(obj, path)

    monkeypatch.setattr(loop.fileio, "atomic_torch_save", dies_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, images, labels, tmp_path / "part.pt", progress=False)
    assert (tmp_path / "part.pt.state").exists() and not (tmp_path / "part.pt").exists()
    monkeypatch.setattr(loop.fileio, "atomic_torch_save", real_save)
    resumed = torch.load(pretrain(cfg, images, labels, tmp_path / "part.pt", progress=False), weights_only=True)
    assert not (tmp_path / "part.pt.state").exists()
    assert resumed["record"]["epochs_done"] == 2
    for k, v in full["state_dict"].items():
        assert torch.equal(v, resumed["state_dict"][k]), k


def test_supervised_pretraining_learns_a_separable_task(tmp_path):
    images, labels = _data(n=128)
    cfg = PretrainConfig(method="supervised", arch="resnet10_w0125", epochs=6, batch_size=32,
                         input_size=32, lr=3e-3)
    model = backbone_from_checkpoint(pretrain(cfg, images, labels, tmp_path / "sl.pt", progress=False))
    from camtrap_ssl.pretrain.probes import extract_features, knn_probe
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    f = extract_features(model, x)
    acc = knn_probe(f[:64], labels[:64], f[64:], labels[64:], k=5)
    assert acc >= 0.9
    assert model.pretrained_record["config"]["method"] == "supervised"
