"""Norouzzadeh et al.'s preprocessing and augmentation, on frames whose answer is known."""
import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image

from camtrap_ssl.core.profiles import SERENGETI_STRIP_FRACTION, get_profile
from camtrap_ssl.data.cct import decode_image
from camtrap_ssl.data.strip import strip_rows
from camtrap_ssl.train import augment as A
from camtrap_ssl.train import rundir
from camtrap_ssl.train.finetune import FinetuneConfig, finetune

SCENE, STRIP = (30, 160, 40), (255, 0, 255)


def serengeti_frame(path, strip=100):
    """A 2048 x 1536 JPEG: a green scene over a magenta information strip of ``strip`` rows."""
    a = np.zeros((1536, 2048, 3), np.uint8) + np.array(SCENE, np.uint8)
    a[1536 - strip:] = STRIP
    a[1536 - strip + 30:1536 - strip + 60, 40:600] = 255  # white "text" in the strip
    Image.fromarray(a).save(path, quality=95)
    return path


def magenta_share(img: np.ndarray) -> float:
    px = img.reshape(-1, 3).astype(int)
    return float(((px[:, 0] > 128) & (px[:, 2] > 128)).mean())


def test_the_strip_is_cut_before_squashing_to_256(tmp_path):
    path = serengeti_frame(tmp_path / "S1_B04_R1_PICT0001.JPG")
    assert strip_rows(1536, SERENGETI_STRIP_FRACTION) == 100  # their img[0:-100, :]
    assert strip_rows(768, SERENGETI_STRIP_FRACTION) == 50  # scaled: a half-size frame
    kept = decode_image(path, 256, SERENGETI_STRIP_FRACTION)
    assert kept.shape == (256, 256, 3)
    assert magenta_share(kept) == 0.0  # no strip row survives, not even blended at the border
    assert np.abs(kept.astype(int) - SCENE).max() <= 12  # what is left is the scene, squashed
    whole = decode_image(path, 256)  # without the cut, the strip fills its share of the rows
    assert magenta_share(whole) == pytest.approx(100 / 1536, abs=0.01)


def test_crop_sizes_flip_and_offsets_are_theirs():
    x = torch.rand(4, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    assert A.default_crop(256, "norouzzadeh") == 224 and A.default_crop(64, "norouzzadeh") == 56
    # brightness draw 0.5 and contrast draw 0.5 are the identity (delta 0, factor 1.0)
    p = torch.tensor([[0.9, 0.0, 0.0, 0.5, 0.5],  # offsets 0, 0
                      [0.9, 0.999999, 0.999999, 0.5, 0.5],  # the largest offsets, 32 and 32
                      [0.9, 0.5, 0.25, 0.5, 0.5],  # 0.5 * 33 -> 16, 0.25 * 33 -> 8
                      [0.1, 0.0, 0.999999, 0.5, 0.5]])  # flipped
    out = A.norouzzadeh_batch(x.clone(), p, 224)
    assert out.shape == (4, 3, 224, 224)
    assert torch.allclose(out[0], x[0, :, :224, :224], atol=1e-6)
    assert torch.allclose(out[1], x[1, :, 32:, 32:], atol=1e-6)
    assert torch.allclose(out[2], x[2, :, 8:232, 16:240], atol=1e-6)
    assert torch.allclose(out[3], x[3, :, 32:, :224].flip(-1), atol=1e-6)


def test_every_offset_of_a_256_frame_is_reachable():
    p = A.augment_params(20_000, seed=0, epoch=0)
    left = (p[:, 1] * 33).long().clamp(max=32)
    assert set(left.tolist()) == set(range(33))


def test_brightness_then_contrast_per_channel_with_their_bounds():
    # a frame whose channels have different means, values kept inside [0, 1] by every draw
    x = torch.full((1, 3, 8, 8), 0.5)
    x[:, 0, :, :4] = 0.45
    x[:, 1] = 0.35
    x[:, 2, ::2] = 0.55
    for ub, uc in [(0.0, 0.0), (1.0 - 1e-7, 1.0 - 1e-7), (0.0, 1.0 - 1e-7), (0.75, 0.25)]:
        p = torch.tensor([[0.9, 0.0, 0.0, ub, uc]])
        delta, factor = 63 / 255 * (2 * ub - 1), 0.2 + 1.6 * uc
        b = x + delta  # tf.image.random_brightness: the same delta on every pixel
        m = b.mean(dim=(2, 3), keepdim=True)  # tf.image.adjust_contrast: the mean of each channel
        expected = ((b - m) * factor + m).clamp(0, 1)
        assert torch.allclose(A.norouzzadeh_batch(x.clone(), p, 8), expected, atol=1e-6)
    # the extreme draws reach their bounds: delta +-63/255, factor 0.2 and 1.8
    const = torch.full((2, 3, 4, 4), 0.5)
    ext = torch.tensor([[0.9, 0, 0, 0.0, 0.5], [0.9, 0, 0, 1 - 1e-7, 0.5]])
    got = A.norouzzadeh_batch(const.clone(), ext, 4)[:, 0, 0, 0] - 0.5
    assert torch.allclose(got, torch.tensor([-63 / 255, 63 / 255]), atol=1e-5)
    spread = torch.zeros(2, 3, 4, 4)
    spread[:, :, :2] = 1.0
    c = A.norouzzadeh_batch(spread * 0.5 + 0.25, torch.tensor([[0.9, 0, 0, 0.5, 0.0],
                                                              [0.9, 0, 0, 0.5, 1 - 1e-7]]), 4)
    assert torch.allclose(c[:, 0, 0, 0] - c[:, 0, 3, 0], torch.tensor([0.5 * 0.2, 0.5 * 1.8]), atol=1e-5)


def test_jitter_over_many_draws_spans_the_range_and_averages_zero():
    n = 20_000
    p = A.augment_params(n, seed=3, epoch=1)
    out = A.norouzzadeh_batch(torch.full((n, 3, 2, 2), 0.5), p, 2)
    delta = out[:, 0, 0, 0] - 0.5  # a constant frame shows the brightness delta alone
    assert delta.min() < -0.98 * 63 / 255 and delta.max() > 0.98 * 63 / 255
    assert delta.min() >= -63 / 255 - 1e-6 and delta.max() <= 63 / 255 + 1e-6
    assert abs(float(delta.mean())) < 0.005
    factor = 0.2 + 1.6 * p[:, 4]
    assert factor.min() >= 0.2 and factor.max() < 1.8 and abs(float(factor.mean()) - 1.0) < 0.01


def test_evaluation_is_the_exact_centre_crop():
    x = torch.rand(2, 3, 256, 256)
    c = A.center_crop(x, 224)
    assert torch.equal(c, x[..., 16:240, 16:240])
    assert torch.equal(c, TF.center_crop(x, [224, 224]))  # torchvision agrees
    with pytest.raises(ValueError, match="crop=300"):
        A.center_crop(x, 300)


def test_the_demo_augmentation_is_kept_and_none_only_crops():
    x = torch.rand(8, 3, 32, 32)
    p = A.augment_params(8, 0, 0)
    assert torch.equal(A.train_transform(x.clone(), p, "demo", 32), A.augment_batch(x.clone(), p))
    assert torch.equal(A.train_transform(x, None, "none", 28), x[..., 2:30, 2:30])
    with pytest.raises(ValueError, match="allowed"):
        A.train_transform(x, p, "imagenet", 28)


def test_profiles_name_their_protocol():
    paper, demo = get_profile("paper"), get_profile("demo")
    assert (paper.resize_size, paper.input_size, paper.augmentation) == (256, 224, "norouzzadeh")
    assert paper.strip_fraction == 100 / 1536
    assert (demo.resize_size, demo.augmentation) == (demo.input_size, "demo")
    assert get_profile("demo", input_size=96).resize_size == 96  # still nothing cropped
    with pytest.raises(ValueError, match="augmentation"):
        get_profile("demo", augmentation="autoaugment")
    with pytest.raises(ValueError, match="resize_size"):
        get_profile("paper", input_size=300)
    with pytest.raises(ValueError, match="augmentation"):
        FinetuneConfig(augmentation="mixup")


class _Seen(torch.nn.Module):
    """A tiny classifier that records the input sides it was given (train / eval)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.fc = torch.nn.Linear(4, 2)
        self.sides = {True: set(), False: set()}

    def forward(self, x):
        self.sides[self.training].add(tuple(x.shape[-2:]))
        return self.fc(self.conv(x).mean((2, 3)))


def test_finetune_crops_and_records_the_preprocessing(tmp_path):
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.rand(16, 3, 32, 32, generator=g), torch.arange(16) % 2)
    model = _Seen()
    cfg = FinetuneConfig(epochs=1, batch_size=8, lr=1e-3, device="cpu")  # norouzzadeh by default
    finetune(model, ds, ds, ["a", "b"], cfg, tmp_path / "run", progress=False)
    assert model.sides == {True: {(28, 28)}, False: {(28, 28)}}
    params = rundir.RunDir(tmp_path / "run").params()
    assert params["finetune"]["augmentation"] == "norouzzadeh"
    assert params["preprocessing"] == {"augmentation": "norouzzadeh", "stored_size": 32,
                                       "train_crop": "random 28 of 32",
                                       "eval_crop": "centre 28 of 32"}
    demo = _Seen()
    finetune(demo, ds, ds, ["a", "b"], FinetuneConfig(epochs=1, batch_size=8, augmentation="demo",
                                                      device="cpu"), tmp_path / "demo", progress=False)
    assert demo.sides == {True: {(32, 32)}, False: {(32, 32)}}
    assert rundir.RunDir(tmp_path / "demo").params()["preprocessing"]["eval_crop"] == "none"


def test_the_strip_of_a_real_serengeti_frame_is_cut(serengeti_samples):
    """S1_F10_R1_PICT0104 (a 409 x 307 copy) carries a white 20-row strip with date and time."""
    path = serengeti_samples / "S1_F10_R1_PICT0104.JPG"
    with Image.open(path) as im:
        frame = np.asarray(im.convert("RGB"))
    white = (frame > 190).all(-1).mean(1)
    rows = strip_rows(frame.shape[0], SERENGETI_STRIP_FRACTION)
    assert rows == 20 and white[-rows:].min() > 0.6 and white[-rows - 1] < 0.05
    cut = decode_image(path, 224, SERENGETI_STRIP_FRACTION)
    assert (cut > 190).all(-1)[-10:].mean() < 0.02  # the bottom rows are ground, not strip
    assert (decode_image(path, 224) > 190).all(-1)[-10:].mean() > 0.6  # kept without the cut
