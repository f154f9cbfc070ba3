"""Reading and writing the image files the challenges are distributed in, and the one scaling rule.

Scaling rule (DESIGN.md: "8-bit and 16-bit inputs are scaled, not clipped"): an integer image is divided
by the maximum of its type, 255 for 8-bit and 65535 for 16-bit, so that the same grey value means the same
number in every frame of a sequence. A float image must already lie in [0, 1]. Anything else is refused
with a message naming the file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from unetbench.errors import DataError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


def to_unit_float(array: np.ndarray, *, source: str) -> np.ndarray:
    """Scale an image to float32 in [0, 1] by the rule in the module docstring."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype == np.uint16:
        return array.astype(np.float32) / np.float32(65535)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise DataError(f"{source}: the image holds NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise DataError(
                f"{source}: float image values span [{low:g}, {high:g}], outside [0, 1]; "
                "save it as 8- or 16-bit integers, or scale it to [0, 1]"
            )
        return array.astype(np.float32)
    raise DataError(
        f"{source}: images of type {array.dtype} are not supported; use 8- or 16-bit unsigned "
        "integers or floats in [0, 1]"
    )


def _single_channel(array: np.ndarray, source: str) -> np.ndarray:
    if (
        array.ndim == 3
        and array.shape[-1] in (3, 4)
        and all(np.array_equal(array[..., 0], array[..., c]) for c in (1, 2))
    ):
        return array[..., 0]  # grey saved as RGB(A)
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    if array.ndim != 2:
        raise DataError(f"{source}: expected a single-channel 2D image, got an array of shape {array.shape}")
    return array


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # "<tifffile.TiffPages @8> invalid page offset 20736": the object's repr says nothing to a user
        self.messages.append(re.sub(r"^<[^>]*>\s*", "", record.getMessage()))


@contextmanager
def _tifffile_log() -> Iterator[list[str]]:
    """Hold what tifffile logs while it reads, instead of letting it reach the terminal.

    tifffile logs the damage it finds (``<tifffile.TiffPages @8> invalid page offset ...``) before it
    raises or returns the pages it could read; our one line says it instead.
    """
    logger = logging.getLogger("tifffile")
    collect, propagate = _Collect(), logger.propagate
    logger.addHandler(collect)
    logger.propagate = False
    try:
        yield collect.messages
    finally:
        logger.removeHandler(collect)
        logger.propagate = propagate


def read_tiff(path: Path, *, what: str = "TIFF") -> np.ndarray:
    """A TIFF file's pixels in their stored type; a damaged or empty file is one :class:`DataError` line."""
    with _tifffile_log() as logged:
        try:
            array = np.asarray(tifffile.imread(path))
        except FileNotFoundError:
            raise DataError(f"{path}: no such file") from None
        except Exception as err:  # tifffile raises many types for a damaged file
            found = f"; {logged[0]}" if logged else ""
            raise DataError(f"{path}: cannot be read as {what} ({err}{found})") from None
    if array.size == 0:
        found = f" ({logged[0]})" if logged else ""
        raise DataError(f"{path}: no pixels could be read{found}; is the file complete?")
    return array


def read_image(path: Path) -> np.ndarray:
    """One 2D image (TIFF or PNG) in its stored type."""
    if path.suffix.lower() in (".tif", ".tiff"):
        return _single_channel(read_tiff(path, what="an image"), str(path))
    try:
        with Image.open(path) as img:
            array = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as err:  # Pillow raises many types for a damaged file
        raise DataError(f"{path}: cannot be read as an image ({err})") from None
    return _single_channel(array, str(path))


def read_stack(path: Path) -> np.ndarray:
    """A multi-page TIFF as a (N, H, W) array in its stored type."""
    array = read_tiff(path, what="a TIFF stack")
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a stack of 2D slices, got an array of shape {array.shape}")
    return array


def write_tiff(path: Path, array: np.ndarray) -> None:
    """Write a 2D image or a (N, H, W) stack as one TIFF, byte-for-byte reproducible for the same data."""
    # No date-time tag and no software tag, so the bytes depend on the pixels only.
    tifffile.imwrite(path, array, photometric="minisblack", metadata=None, software=False)


def write_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG")


def natural_key(name: str) -> tuple:
    """Sort "2.png" before "10.png": numbers compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def image_files(directory: Path) -> list[Path]:
    """The TIFF and PNG files of a folder, in natural order."""
    files = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))
