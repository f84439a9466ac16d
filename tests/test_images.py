"""Tests for camtrap_ssl.data.images: real camera-trap samples and fabricated awkward files."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from camtrap_ssl.data.images import load_image, load_image_folder

SAMPLES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "serengeti-samples"


def test_serengeti_samples():
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is absent")
    x, paths = load_image_folder(SAMPLES, 48)
    n_files = len([p for p in SAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".jpeg")])
    assert x.shape == (n_files, 3, 48, 48) and len(paths) == n_files
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert paths == sorted(paths)
    # night infrared frames come out as grey RGB (R = G = B up to JPEG chroma noise)
    grey = (x[:, 0] - x[:, 1]).abs().amax((1, 2)) < 0.05
    assert 0 < int(grey.sum()) < n_files
    x2, p2 = load_image_folder(SAMPLES, 16, limit=3)
    assert x2.shape == (3, 3, 16, 16) and p2 == paths[:3]


def _save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    _save(Image.fromarray(rng.integers(0, 256, (40, 60), dtype=np.uint8), "L"),
          tmp_path / "a_grey.jpg")
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
    _save(Image.fromarray(rgba, "RGBA"), tmp_path / "b_rgba.png")
    _save(Image.new("CMYK", (30, 30), (0, 255, 255, 0)), tmp_path / "c_cmyk.jpg")
    _save(Image.new("RGB", (5, 3), (0, 0, 255)), tmp_path / "d_tiny.JPG")
    (tmp_path / "e_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    _save(Image.new("RGB", (12, 12), (0, 255, 0)), tmp_path / "sub" / "f_nested.jpeg")
    return tmp_path


def test_fabricated_modes_and_corrupt_file(folder):
    with pytest.warns(UserWarning, match="e_corrupt.jpg"):
        x, paths = load_image_folder(folder, 8)
    names = [p.name for p in paths]
    assert names == ["a_grey.jpg", "b_rgba.png", "c_cmyk.jpg", "d_tiny.JPG", "f_nested.jpeg"]
    assert x.shape == (5, 3, 8, 8)
    assert torch.allclose(x[0, 0], x[0, 1]) and torch.allclose(x[0, 1], x[0, 2])  # grey -> RGB
    assert torch.allclose(x[1, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=0.02)  # opaque red
    assert torch.allclose(x[1, :, -1, 0], torch.ones(3), atol=0.02)  # transparent -> white
    assert x[2, 0].mean() > 0.9 and x[2, 1:].mean() < 0.1  # CMYK (0, 1, 1, 0) is red
    assert torch.allclose(x[3, 2], torch.ones(8, 8), atol=0.02)  # tiny blue upsampled
    with pytest.warns(UserWarning):
        flat, flat_paths = load_image_folder(folder, 8, recursive=False)
    assert "f_nested.jpeg" not in [p.name for p in flat_paths] and len(flat) == 4


def test_large_jpeg_uses_draft_and_matches_full_decode(tmp_path, monkeypatch):
    yy, xx = np.mgrid[0:1536, 0:2048]
    arr = np.stack([xx / 2048, yy / 1536, 0.5 + 0 * xx], -1) * 255  # smooth gradients
    path = _save(Image.fromarray(arr.astype(np.uint8)), tmp_path / "big.jpg", quality=90)
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = original(self, mode, size)
        calls.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    x = load_image(path, 64)
    assert calls and calls[0][0] == (64, 64)
    assert calls[0][1][0] < 2048 and min(calls[0][1]) >= 64  # decoded reduced, never below size
    with Image.open(path) as img:
        ref = np.asarray(img.convert("RGB").resize((64, 64), Image.BILINEAR)) / 255.0
    assert np.abs(x.permute(1, 2, 0).numpy() - ref).mean() < 0.02


def test_letterbox_keeps_aspect(tmp_path):
    _save(Image.new("RGB", (40, 20), (255, 0, 0)), tmp_path / "wide.png")
    x, _ = load_image_folder(tmp_path, 20, fit="letterbox", fill=0.0)
    assert torch.allclose(x[0, 0, 5:15], torch.ones(10, 20))  # the image band
    assert torch.all(x[0, :, :5] == 0) and torch.all(x[0, :, 15:] == 0)  # the bars
    squash, _ = load_image_folder(tmp_path, 20)
    assert torch.allclose(squash[0, 0], torch.ones(20, 20))


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope", 32)
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path, 32)
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable image"):
        load_image_folder(tmp_path, 32)
    with pytest.raises(ValueError, match="squash"):
        load_image_folder(tmp_path, 32, fit="crop")
    with pytest.raises(ValueError, match="size"):
        load_image_folder(tmp_path, 0)
