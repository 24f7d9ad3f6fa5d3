"""Moved copies of the evaluation images: what a CNN still reads and an exact-pixel table cannot.

The evaluation images are public MNIST (docs/data.md), so a model can be a table of their
pixels and labels. Each run therefore also measures the trained model on copies made on the
host from that run's secret seed: every image shifted by a pixel (``max_shift``; never by
nothing), zeros filling the edge it leaves, and light integer noise added to every pixel. The digit
is the same digit, so a convolutional network reads it about as well as the original, while
any key computed from exact pixel values (a hash, an equality, a lookup), even one that tries
every shift, no longer matches: the noise changes most of the 784 values.

Labels are unchanged (a moved set is scored against its source's labels) and stay on the host;
the seed never leaves it either. Determinism: the same seed gives the same copies on one numpy
build; nothing needs them to agree across builds, since they live for one run only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: What a moved set's name adds to its source's (``"test"`` -> ``"test-moved"``).
MOVED_SUFFIX = "-moved"
#: Images processed at once: bounds the temporary arrays (int16 noise) to a few MB.
_CHUNK = 2048


@dataclass(frozen=True)
class Perturbation:
    """How far the copies move from the originals (chosen by measuring the reference's trained
    model, docs/accuracy-threshold.md)."""

    #: Largest shift in pixels along each axis; each image gets a shift in
    #: ``[-max_shift, max_shift]`` squared other than ``(0, 0)``.
    max_shift: int = 1
    #: Integer noise uniform in ``[-noise, noise]`` grey levels (of 255) on every pixel.
    noise: int = 16

    def __post_init__(self) -> None:
        if not 1 <= self.max_shift <= 4 or not 0 <= self.noise <= 64:
            raise ValueError(f"perturbation out of range: {self}")


DEFAULT_PERTURBATION = Perturbation()


def moved_name(name: str) -> str:
    """The name of ``name``'s moved copy."""
    return name + MOVED_SUFFIX


def source_name(name: str) -> str:
    """The image set a (possibly moved) set's labels come from."""
    return name.removesuffix(MOVED_SUFFIX)


def perturb_images(images: np.ndarray, seed: int,
                   perturbation: Perturbation = DEFAULT_PERTURBATION) -> np.ndarray:
    """A moved copy of ``images`` (uint8 ``(n, h, w)``), the same for the same seed.

    Each image is shifted by its own nonzero offset with zero fill, then gets integer noise in
    ``[-noise, noise]`` clipped to 0..255. The input is not changed."""
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"expected uint8 (n, h, w) images, got {images.dtype} {images.shape}")
    rng = np.random.default_rng(seed)
    s = perturbation.max_shift
    offsets = [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1) if (dy, dx) != (0, 0)]
    choice = rng.integers(0, len(offsets), size=len(images))
    out = np.zeros_like(images)
    height, width = images.shape[1:]
    for k, (dy, dx) in enumerate(offsets):
        which = np.flatnonzero(choice == k)
        if which.size == 0:
            continue
        src_y, dst_y = _span(dy, height)
        src_x, dst_x = _span(dx, width)
        out[which, dst_y, dst_x] = images[which, src_y, src_x]
    if perturbation.noise:
        for start in range(0, len(out), _CHUNK):
            block = out[start:start + _CHUNK]
            noise = rng.integers(-perturbation.noise, perturbation.noise + 1, size=block.shape,
                                 dtype=np.int16)
            block[...] = np.clip(block.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return out


def moved_copies(sets: dict[str, np.ndarray], seed: int,
                 perturbation: Perturbation = DEFAULT_PERTURBATION) -> dict[str, np.ndarray]:
    """A moved copy of each set, under :func:`moved_name`, each from its own stream of the seed
    (so one set's copy does not depend on the sets before it)."""
    streams = np.random.SeedSequence(seed).spawn(len(sets))
    return {moved_name(name): perturb_images(images, int(stream.generate_state(1)[0]),
                                             perturbation)
            for (name, images), stream in zip(sets.items(), streams, strict=True)}


def _span(shift: int, size: int) -> tuple[slice, slice]:
    """Source and destination slices of one axis for a shift by ``shift`` pixels."""
    if shift >= 0:
        return slice(0, size - shift), slice(shift, size)
    return slice(-shift, size), slice(0, size + shift)
