"""The image codec, the image data sets and the Model/CLI plumbing for images (no family needed:
a closed-form independent-pixels model stands in, whose log-likelihood is known exactly)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import genmodels as gm
from genmodels import registry
from genmodels.cli import main
from genmodels.codecs.image import ImageCodec, Images, grid, read_folder
from genmodels.core import GenerativeModule, Spec
from genmodels.errors import ConfigError, DataError


class PixelTable(GenerativeModule):
    """Independent pixels, each a categorical over 256 values per class: exact, closed form."""

    likelihood = "exact"
    exact_on_discrete = True
    closed_form = True
    conditional = True
    modalities = ("image",)

    def __init__(self, spec: Spec):
        super().__init__(spec)
        k = max(1, spec.extra["n_classes"])
        self.register_buffer("logits", torch.zeros(k, *spec.event_shape, 256))

    def fit_closed_form(self, train, val=None, *, generator=None):
        label = train["label"].clamp(min=0)
        counts = torch.ones_like(self.logits)                     # add-one smoothing
        onehot = torch.nn.functional.one_hot(train["pixels"].long(), 256).float()
        counts.index_add_(0, label, onehot)
        self.logits.copy_(counts.log() - counts.sum(-1, keepdim=True).log())
        return {}

    def log_prob(self, batch):
        lp = self.logits[batch["label"].clamp(min=0)]                                  # (B, C, H, W, 256)
        mass = lp.gather(-1, batch["pixels"].long().unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)
        return mass + math.prod(self.spec.event_shape) * math.log(256)

    def sample(self, n, *, condition=None, generator=None):
        label = condition["label"] if condition else torch.zeros(n, dtype=torch.long)
        probs = self.logits[label].exp().reshape(-1, 256)
        pix = torch.multinomial(probs, 1, generator=generator).reshape(n, *self.spec.event_shape)
        return {"x": (pix.float() + 0.5) / 256}


@pytest.fixture
def pixel_family(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, "pixeltable", {"image": f"{__name__}:PixelTable"})


def _write_images(folder, arrays, mode="L"):
    folder.mkdir(parents=True, exist_ok=True)
    for i, a in enumerate(arrays):
        Image.fromarray(a, mode=None).save(folder / f"im{i}.png")


def test_digits_and_mnist_builtin():
    d = gm.datasets.load("digits")
    assert isinstance(d.train, Images) and d.modality == "image"
    assert d.train.images.dtype == np.uint8 and d.train.images.shape[1:] == (8, 8)
    assert d.train.images.max() == 255 and len(d.train) + len(d.test) == 1797
    assert d.train.labels is not None and set(np.unique(d.train.labels)) == set(range(10))


def test_codec_roundtrip_layouts():
    rng = np.random.default_rng(0)
    for shape in [(5, 8, 6), (5, 8, 6, 3), (5, 8, 6, 1)]:
        a = rng.integers(0, 256, shape, dtype=np.uint8)
        c = ImageCodec().fit(a)
        b = c.encode(a)
        assert b["pixels"].shape == (5, shape[3] if len(shape) == 4 else 1, 8, 6)
        assert c.spec().event_shape == b["pixels"].shape[1:] and c.spec().extra["n_classes"] == 0
        x = c.dequantize(b, torch.Generator().manual_seed(0))["x"]
        assert ((x * 256).floor() == b["pixels"].float()).all()           # dequantized inside each bin
        back = c.decode({"x": x})
        assert back.shape == a.shape and (back == a).all()
        c2 = ImageCodec.from_state(c.state())
        assert (c2.decode({"x": x}) == a).all()
        assert torch.allclose(c.log_det(b), torch.full((5,), -math.prod(b["pixels"].shape[1:]) * math.log(256),
                                                       dtype=torch.float64))


def test_bad_arrays():
    with pytest.raises(DataError, match="8-bit"):
        ImageCodec.coerce(np.random.rand(4, 8, 8))
    with pytest.raises(DataError, match="channels first"):
        ImageCodec.coerce(np.zeros((4, 3, 8, 8), dtype=np.uint8))
    c = ImageCodec().fit(np.zeros((4, 8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="8x8 grayscale.*8x8 RGB"):
        c.encode(np.zeros((4, 8, 8, 3), dtype=np.uint8))
    with pytest.raises(ConfigError, match="without labels"):
        c.encode_condition({"label": 1})


def test_labels_and_conditions():
    imgs = Images(np.zeros((6, 8, 8), dtype=np.uint8), np.array([3, 5, 5, 3, 9, 9]))
    c = ImageCodec().fit(imgs)
    assert c.spec().extra["n_classes"] == 3
    assert c.encode(imgs)["label"].tolist() == [0, 1, 1, 0, 2, 2]
    assert c.encode_condition({"label": 5})["label"].tolist() == [1]
    assert c.encode_condition({"label": "9"})["label"].tolist() == [2]          # the CLI's text
    with pytest.raises(DataError, match="never seen"):
        c.encode_condition({"label": 4})
    with pytest.raises(DataError, match="never seen"):
        c.encode(Images(np.zeros((1, 8, 8), dtype=np.uint8), np.array([7])))
    with pytest.raises(ConfigError, match="only on 'label'"):
        c.encode_condition({"colour": 1})
    assert torch.allclose(c.label_log_prior.exp(), torch.tensor([1 / 3] * 3, dtype=torch.float64))


def test_folders(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 8, 8), dtype=np.uint8)
    _write_images(tmp_path / "flat", a)
    got = read_folder(tmp_path / "flat")
    assert got.images.shape == (3, 8, 8) and (got.images == a).all() and got.labels is None
    _write_images(tmp_path / "classes" / "cat", a[:2])
    _write_images(tmp_path / "classes" / "dog", a[2:])
    got = read_folder(tmp_path / "classes")
    assert got.classes == ["cat", "dog"] and got.labels.tolist() == [0, 0, 1]
    codec = ImageCodec().fit(tmp_path / "classes")
    assert codec.encode_condition({"label": "dog"})["label"].tolist() == [1]
    with pytest.raises(DataError, match=r"'cow' was never seen.*\['cat', 'dog'\]"):     # names the classes
        codec.encode_condition({"label": "cow"})
    rgb = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    _write_images(tmp_path / "rgb", rgb)
    assert (read_folder(tmp_path / "rgb").images == rgb).all()

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        read_folder(tmp_path / "empty")
    _write_images(tmp_path / "mixed", [a[0], np.zeros((10, 12), dtype=np.uint8)])
    with pytest.raises(DataError, match="different sizes.*size"):
        read_folder(tmp_path / "mixed")
    assert read_folder(tmp_path / "mixed", size=(8, 8)).images.shape == (2, 8, 8)
    _write_images(tmp_path / "junk", a[:1])
    (tmp_path / "junk" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="notes.txt is not an image"):
        read_folder(tmp_path / "junk")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="could not be read"):
        read_folder(tmp_path / "broken")


def test_grid_shape():
    g = grid(np.zeros((5, 8, 6), dtype=np.uint8), ncol=3, pad=2)
    assert g.shape == (2 * 10 + 2, 3 * 8 + 2)


def test_model_with_exact_pixel_table(pixel_family, tmp_path):
    d = gm.datasets.load("digits")
    m = gm.Model("pixeltable").fit(d.train, verbose=False, validation=0)
    assert m.modality_ == "image" and m.likelihood == "exact"       # exact on 8-bit values, not a bound
    # the closed form: sum over pixels of log(count + 1) - log(n_class + 256)
    lp = m.log_prob(d.test)
    pix, lab = d.test.images[:3], d.test.labels[:3]
    by_hand = []
    for p, y in zip(pix, lab):
        rows = d.train.images[d.train.labels == y]
        counts = (rows == p[None]).sum(0)
        by_hand.append(np.sum(np.log(counts + 1) - np.log(len(rows) + 256)))
    assert np.allclose(lp[:3], by_hand)
    # an unlabelled image gets the marginal over the classes
    marg = m.log_prob(d.test.images[:3])
    per_class = np.stack([m.log_prob(Images(pix, np.full(3, k))) for k in range(10)])
    prior = np.bincount(d.train.labels) / len(d.train)
    assert np.allclose(marg, np.logaddexp.reduce(per_class + np.log(prior)[:, None], axis=0))
    s = m.sample(7, seed=1, condition={"label": 3})
    assert s.shape == (7, 8, 8) and s.dtype == np.uint8
    assert (m.sample(7, seed=1, condition={"label": 3}) == s).all()
    with pytest.raises(ConfigError, match="unknown sampling option"):
        m.sample(2, guidance=1.0)
    m.save(tmp_path / "m")
    m2 = gm.load(tmp_path / "m")
    assert np.allclose(m2.log_prob(d.test), lp)
    with pytest.raises(DataError, match="never seen"):
        m.sample(2, condition={"label": 11})


def test_cli_images(pixel_family, tmp_path, capsys):
    a = np.random.default_rng(0).integers(0, 256, (6, 8, 8), dtype=np.uint8)
    for k, cls in enumerate(["a", "b"]):
        _write_images(tmp_path / "data" / cls, a[3 * k: 3 * k + 3])
    assert main(["fit", str(tmp_path / "data"), "--model", "pixeltable", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    assert main(["sample", str(tmp_path / "m"), "-n", "5", "-o", str(tmp_path / "out"), "--condition", "label=b"]) == 0
    pngs = sorted((tmp_path / "out").glob("sample_*.png"))
    assert len(pngs) == 5 and (tmp_path / "out" / "grid.png").exists()
    assert np.asarray(Image.open(pngs[0])).shape == (8, 8)
    assert main(["score", str(tmp_path / "m"), str(tmp_path / "data"), "-o", str(tmp_path / "s.csv")]) == 0
    assert "bits_per_dim" in (tmp_path / "s.csv").read_text().splitlines()[0]
    rgb = tmp_path / "rgb"
    _write_images(rgb, np.zeros((2, 8, 8, 3), dtype=np.uint8))
    assert main(["score", str(tmp_path / "m"), str(rgb), "-o", str(tmp_path / "t.csv")]) == 2
    assert "grayscale" in capsys.readouterr().err


def test_image_only_family_before_fit():
    assert gm.Model("pixelcnn").likelihood == "exact"        # no tabular version: its image class answers


def test_family_without_image_version():
    with pytest.raises(gm.errors.UnknownModelError, match="no image version"):
        gm.Model("gmm").fit(np.zeros((4, 8, 8), dtype=np.uint8))
