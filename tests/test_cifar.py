"""CIFAR through torchvision, offline: a clear error when absent, [0,1] tensors when present."""
import pickle

import numpy as np
import pytest
import torch

from camtrap_ssl.data import cifar


def fabricate(root, name, n_per_file=6):
    """torchvision's on-disk layout with pickled numpy batches (md5s will not match)."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder = root / "cifar-10-batches-py"
        files = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
        meta = ("batches.meta", {"label_names": [f"c{k}" for k in range(10)]})
        label_key, n_classes = "labels", 10
    else:
        folder = root / "cifar-100-python"
        files = ["train", "test"]
        meta = ("meta", {"fine_label_names": [f"f{k}" for k in range(100)]})
        label_key, n_classes = "fine_labels", 100
    folder.mkdir(parents=True)
    truth = {}
    for f in files:
        data = rng.integers(0, 256, (n_per_file, 3072), dtype=np.uint8)
        labels = rng.integers(0, n_classes, n_per_file).tolist()
        truth[f] = (data, labels)
        with open(folder / f, "wb") as fh:
            pickle.dump({"data": data, label_key: labels}, fh)
    with open(folder / meta[0], "wb") as fh:
        pickle.dump(meta[1], fh)
    return truth


def test_missing_dataset_error_names_root_files_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        cifar.cifar_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "data_batch_1" in msg
    assert "download=True" in msg and "torchvision.datasets.CIFAR10" in msg
    with pytest.raises(ValueError, match="allowed"):
        cifar.cifar_dataset("cifar1000", tmp_path)


def test_fabricated_cifar10_needs_verify_md5_false(tmp_path):
    truth = fabricate(tmp_path, "cifar10")
    with pytest.raises(RuntimeError, match="md5"):
        cifar.cifar_dataset("cifar10", tmp_path)
    train = cifar.cifar_dataset("cifar10", tmp_path, train=True, verify_md5=False)
    test = cifar.cifar_dataset("cifar10", tmp_path, train=False, verify_md5=False, size=48)
    assert len(train) == 30 and len(test) == 6 and train.classes[3] == "c3"
    x, y = train[7]  # second batch, second row
    data, labels = truth["data_batch_2"]
    expect = torch.from_numpy(data[1].reshape(3, 32, 32)).float() / 255
    assert y == labels[1] and torch.allclose(x, expect)
    xt, _ = test[0]
    assert xt.shape == (3, 48, 48) and 0 <= xt.min() and xt.max() <= 1


def test_fabricated_cifar100_fine_labels(tmp_path):
    truth = fabricate(tmp_path, "cifar100")
    ds = cifar.cifar_dataset("cifar100", tmp_path, train=False, verify_md5=False)
    assert len(ds) == 6 and len(ds.classes) == 100
    assert [ds[k][1] for k in range(6)] == truth["test"][1]
