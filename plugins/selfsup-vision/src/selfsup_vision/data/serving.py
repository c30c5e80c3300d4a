"""Serving decoders: an uploaded image file (its bytes) -> the sample the run's data source yields.

Each vision data source registers one of these factories as its ``decoder=``; the factory gets the
source's validated options and reads no data (no folder scan, no shard, no array), so building a
decoder is cheap and works where the training data is not.

* ``image_folder`` and ``webdataset`` (:class:`ImageDecoder`): exactly the sources' decoding
  (:func:`~selfsup_vision.data.decode.loaded`) and preprocessing (:func:`~selfsup_vision.data.decode.to_tensor`:
  ``channels`` grey or RGB, shorter side resized to ``size`` and centre-cropped, bicubic, values in
  [0, 1]). Like the sources, no EXIF rotation is applied and an alpha channel is dropped by PIL's
  ``convert``.
* ``digits`` and ``mnist5k`` (:class:`DigitDecoder`): those sets are arrays, not files, so an upload is
  made to look like one of their images: grey (PIL ``convert("L")``); **inverted when its background is
  light**: the sets are bright strokes on a black background, so an image whose border pixels have a
  median above mid-grey (dark ink on paper, a black-on-white drawing) is inverted and one that already
  has a dark background (a set image, a white-on-black canvas) is kept as it is (``invert=True`` or
  ``False`` forces it; stats report ``inverted``); scaled to fit the set's side (8 / 28 px), aspect kept,
  with box (area) resampling, as the digits were made (ink pixels counted in 4x4 blocks), and padded to a
  square with the background level; values ``level / LEVELS`` on the set's grid (digits: multiples of
  1/16, MNIST: of 1/255); then the source's ``size`` option resizes it with the very function the source
  uses. The upload is taken as the whole frame: no digit cropping or centring (MNIST centres digits in
  a 20x20 box; framing them so is the client's job) and no contrast stretch. An image of the set
  written as an 8-bit PNG at its native size (or upscaled by an integer factor, nearest) decodes to
  exactly its sample.

Bad inputs raise :class:`selfsup.components.BadInput` on the field ``"image"``: a missing field, a value
that is not bytes, empty bytes, bytes PIL cannot decode or a truncated image (422, with PIL's reason),
an image over ``max_pixels`` (413, found from the header before decoding, so a decompression bomb costs
nothing). EPS is not opened (PIL runs Ghostscript on it); every other format PIL reads is.
"""

from __future__ import annotations

import abc
import io
from typing import Any, Literal, Mapping

import numpy as np
import torch
from PIL import Image, ImageOps

from selfsup.components import BadInput, BuildContext
from selfsup_vision.data.arrays import DIGITS_LEVELS, DIGITS_SIZE, MNIST_LEVELS, MNIST_SIZE, resize
from selfsup_vision.data.decode import ImageTooLarge, loaded, to_tensor

FIELD = "image"
#: Default pixel limit of an upload (width x height).
MAX_PIXELS = 40_000_000
#: PIL formats never opened for a served upload: EPS shells out to Ghostscript.
UNSAFE_FORMATS = frozenset({"EPS"})


def _formats() -> tuple[str, ...]:
    Image.init()
    return tuple(f for f in Image.OPEN if f not in UNSAFE_FORMATS)


def _reason(exc: BaseException, limit: int = 160) -> str:
    """PIL's complaint, short and without object reprs (``cannot identify image file <_io.BytesIO ...>``)."""
    if isinstance(exc, Image.UnidentifiedImageError):
        return "not an image PIL can read (cannot identify image file)"
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"cannot decode the image: {text}"


class _UploadDecoder(abc.ABC):
    """The shared part: checks the field, opens the bytes safely, reports width and height.
    Subclasses implement ``_preprocess(img) -> (tensor, extra stats)``."""

    fields: Mapping[str, str] = {FIELD: "image"}

    def __init__(self, *, max_pixels: int = MAX_PIXELS):
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        self.max_pixels = max_pixels
        self.formats = _formats()

    @abc.abstractmethod
    def _preprocess(self, img: Image.Image) -> tuple[torch.Tensor, dict[str, float]]:
        """The decoded image -> (sample tensor, extra stats); each concrete decoder defines it."""

    def __call__(self, raw: Mapping[str, Any], *, truncate: bool = True) -> tuple[dict[str, Any], dict[str, float]]:
        # truncate is for texts; an image is never cut
        if FIELD not in raw:
            raise BadInput(FIELD, "missing: send the bytes of an image file")
        data = raw[FIELD]
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BadInput(FIELD, f"expected the bytes of an image file, got {type(data).__name__}")
        if len(data) == 0:
            raise BadInput(FIELD, "empty: no bytes")
        try:
            with loaded(io.BytesIO(data), max_pixels=self.max_pixels, formats=self.formats) as img:
                width, height = img.size
                image, extra = self._preprocess(img)
        except (ImageTooLarge, Image.DecompressionBombError) as exc:
            raise BadInput(FIELD, str(exc), 413) from None
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any PIL error on these bytes means "not a readable image"
            raise BadInput(FIELD, _reason(exc)) from None
        return {"image": image}, {"width": float(width), "height": float(height), **extra}


class ImageDecoder(_UploadDecoder):
    """``image_folder`` / ``webdataset``: ``[channels, size, size]`` float32 in [0, 1], the sources' own
    :func:`~selfsup_vision.data.decode.to_tensor`."""

    def __init__(self, size: int, channels: int, *, max_pixels: int = MAX_PIXELS):
        super().__init__(max_pixels=max_pixels)
        self.size, self.channels = size, channels

    def _preprocess(self, img: Image.Image) -> tuple[torch.Tensor, dict[str, float]]:
        return to_tensor(img, self.size, self.channels), {}


class DigitDecoder(_UploadDecoder):
    """``digits`` / ``mnist5k``: ``[1, size, size]`` float32 in [0, 1], bright strokes on black, the set's
    value grid (see the module docstring). ``native``: the set's side; ``levels``: its value levels;
    ``size``: the source's ``size`` option (None: native); ``invert``: ``"auto"`` (light background ->
    inverted), True or False."""

    def __init__(self, native: int, levels: int, size: int | None = None, *,
                 invert: bool | Literal["auto"] = "auto", max_pixels: int = MAX_PIXELS):
        super().__init__(max_pixels=max_pixels)
        self.native, self.levels, self.size, self.invert = native, levels, size, invert

    def _preprocess(self, img: Image.Image) -> tuple[torch.Tensor, dict[str, float]]:
        grey = img.convert("L")
        pixels = np.asarray(grey)
        border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
        background = float(np.median(border))
        invert = background > 127.5 if self.invert == "auto" else bool(self.invert)
        if invert:
            grey, background = ImageOps.invert(grey), 255.0 - background
        n, (w, h) = self.native, grey.size
        scale = n / max(w, h)
        fitted = (min(n, max(1, round(w * scale))), min(n, max(1, round(h * scale))))
        small = grey.resize(fitted, Image.Resampling.BOX)  # a copy when already n x n
        canvas = Image.new("L", (n, n), int(round(background)))
        canvas.paste(small, ((n - fitted[0]) // 2, (n - fitted[1]) // 2))
        values = np.asarray(canvas) / 255.0  # float64, as the sets divide
        if self.levels != 255:
            values = np.round(values * self.levels) / self.levels
        x = torch.from_numpy(values.astype(np.float32))[None, None]  # [1, 1, n, n]
        return resize(x, self.size)[0].contiguous(), {"inverted": float(invert)}


def digits_decoder(options: Any, context: BuildContext) -> DigitDecoder:
    return DigitDecoder(DIGITS_SIZE, DIGITS_LEVELS, options.size)


def mnist5k_decoder(options: Any, context: BuildContext) -> DigitDecoder:
    return DigitDecoder(MNIST_SIZE, MNIST_LEVELS, options.size)


def image_decoder(options: Any, context: BuildContext) -> ImageDecoder:
    """``image_folder`` and ``webdataset``: both decode with their ``size`` and ``channels`` options."""
    return ImageDecoder(options.size, options.channels)
