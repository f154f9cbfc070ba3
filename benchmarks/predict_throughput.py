"""Prediction throughput of the paper's full U-Net on 512x512 ISBI 2012 slices: overlap-tile with and
without 8-fold test-time averaging.

Per setting: slices per second and 572 px tiles per second through the network (bf16 autocast on CUDA,
float32 on the CPU). The reference measured in the same run is the averaging done the slow way: each of
the 8 versions predicted by its own call and turned back, one after another, where ``predict_image``
sends the tiles of all versions through the network together. The weights are random: speed does not
depend on them.

    python benchmarks/predict_throughput.py [--device auto|cpu|cuda] [--slices N] [--batch 4 8 16]
                                            [--data DIR_WITH_test-volume.tif] [--out RESULT.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _timing import device_and_name, recorded, result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.inference.tiling import TTA_VERSIONS, overlap_tile_plan, predict_image, restore, transform
from unetbench.model.unet import UNet
from unetbench.spec import InferenceSpec


def slices(data: Path | None, count: int) -> np.ndarray:
    if data is not None:
        import tifffile

        stack = tifffile.imread(data / "test-volume.tif")[:count]
        return stack.astype(np.float32) / 255
    return np.random.default_rng(0).random((count, 512, 512), dtype=np.float32)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batched(model, images, spec, device, tta: str) -> float:
    """Seconds for ``predict_image`` with averaging: all versions' tiles through the network together."""
    synchronise(device)
    start = time.perf_counter()
    for image in images:
        predict_image(model, image, spec, device=device, tta=tta)
    synchronise(device)
    return time.perf_counter() - start


def one_call_per_version(model, images, spec, device, tta: str) -> float:
    """Seconds for the same averaging done the slow way: one prediction call per version."""
    synchronise(device)
    start = time.perf_counter()
    for image in images:
        total = 0
        for version in TTA_VERSIONS[tta]:
            plain = predict_image(model, transform(image, version).copy(), spec, device=device, tta="none")
            total = total + restore(plain, version)
    synchronise(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--slices", type=int, default=None, help="slices to predict (default: 30 on CUDA, 1 on CPU)"
    )
    parser.add_argument("--batch", type=int, nargs="+", default=[4], help="tiles per forward pass")
    parser.add_argument("--data", type=Path, default=None, help="folder with the ISBI 2012 test-volume.tif")
    parser.add_argument("--out", type=result_file, default=None, help="write the result here (Markdown)")
    args = parser.parse_args()
    device, name = device_and_name(args.device)
    with recorded(args.out, "Prediction throughput", device=device, markdown=True):
        table(args, device, name)


def table(args, device: torch.device, name: str) -> None:
    """Print the settings and the table, a row as soon as it is measured."""
    cuda = device.type == "cuda"
    count = args.slices or (30 if cuda else 1)
    images = slices(args.data, count)
    print(f"device: {name}; torch {torch.__version__}; {'bf16 autocast' if cuda else 'float32'}")
    source = "real ISBI 2012" if args.data else "random"
    print(f"{count} slices of 512x512 ({source}), the paper's network, 572 px tiles")
    torch.manual_seed(0)
    model = UNet().to(device).eval()
    tiles_per_slice = len(overlap_tile_plan(model, images[0], tile_size=572).tiles)
    print()
    print("| batch | averaging | slices/s | tiles/s | one call per version (reference) | speed-up |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in args.batch:
        spec = InferenceSpec(tile_size=572, batch_size=batch)
        predict_image(model, images[0], spec, device=device, tta="dihedral")  # warm-up: kernels, allocator
        for tta in ("none", "dihedral"):
            versions = len(TTA_VERSIONS[tta])
            seconds = batched(model, images, spec, device, tta)
            reference = one_call_per_version(model, images, spec, device, tta) if versions > 1 else seconds
            tiles = count * tiles_per_slice * versions
            print(
                f"| {batch} | {tta} ({versions}x) | {count / seconds:.2f} | {tiles / seconds:.1f} | "
                f"{count / reference:.2f} slices/s | {reference / seconds:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
