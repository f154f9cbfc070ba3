"""Per-slice weight-map time against the naive reference, and elastic deformation time per 572x572 tile
for the numpy and the torch implementations (on the GPU too when there is one), one tile at a time and
a batch of 8 at once as the trainer cuts them (``TileBatcher``: draws, grids and one ``grid_sample`` per
tensor kind for the whole batch), in one run.

    python benchmarks/augment_weightmap_speed.py [--repeats 5] [--out FILE.md]

Weight maps use the real ISBI 2012 labels from ../shared/datasets when present, else synthetic EM-like
slices of the same size.
"""

from __future__ import annotations

import argparse
import os
import platform
from types import SimpleNamespace

import numpy as np
import tifffile
import torch
from _timing import add_data_root, isbi2012_file, median_seconds, recorded, result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.datasets import synthetic
from unetbench.spec import AugmentationSpec
from unetbench.training.augment import draw_deformation
from unetbench.training.sampler import TileBatcher, sample_tile
from unetbench.training.weightmap import border_weight_map, border_weight_map_naive, class_balance_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=result_file, help="write the output here too (Markdown)")
    add_data_root(parser)
    args = parser.parse_args()
    with recorded(args.out, "Weight maps and augmentation: speed"):
        _measure(args)


def _measure(args) -> None:
    cores = os.cpu_count()
    print(
        f"machine: {platform.machine()}, {cores} cores, torch {torch.__version__}, median of {args.repeats}"
    )

    labels, where = isbi2012_file(args.data_root, "train-labels.tif")
    if labels is not None:
        targets = [(s > 0).astype(np.uint8) for s in tifffile.imread(labels)[:5]]
        source = f"slices 0-4 of {where}"
    else:  # said, not silent: the figures are of made-up labels then
        targets = [(synthetic.em_slice(0, i)[1] > 0).astype(np.uint8) for i in range(5)]
        source = f"synthetic EM-like slices instead: {where}"
    fast = median_seconds(
        lambda: [border_weight_map(t, class_weights=class_balance_weights(t)) for t in targets], args.repeats
    )
    naive = median_seconds(
        lambda: [border_weight_map_naive(t, class_weights=class_balance_weights(t)) for t in targets], 1
    )
    n = len(targets)
    print(f"weight map, 512x512, {source}:")
    print(f"  naive (one EDT per cell over the image): {naive / n * 1e3:8.1f} ms/slice")
    ratio = naive / fast
    print(f"  bounded boxes (error < 1e-3):            {fast / n * 1e3:8.1f} ms/slice   {ratio:5.1f}x faster")

    rng = np.random.default_rng(0)
    image = rng.random((512, 512)).astype(np.float32)
    target = (rng.random((512, 512)) > 0.2).astype(np.int64)
    weights = rng.random((512, 512)).astype(np.float32)
    spec = AugmentationSpec(rotation=180.0, grey_values=0.1)
    deformation = draw_deformation(rng, spec, 572)  # the numpy reference's draw
    args_tile = dict(tile=572, out=388, origin=(62, 62), deformation=deformation, interpolation="cubic")
    cpu = median_seconds(lambda: sample_tile(image, target, weights, **args_tile), args.repeats)
    print("elastic deformation + rotation + flips + grey values, one 572x572 tile (image, labels, weights):")
    print(f"  numpy (CPU):        {cpu * 1e3:8.1f} ms/tile   (reference)")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        sample = SimpleNamespace(key="0", image=image, target=target)
        batcher = TileBatcher([sample], {"0": weights}, tile=572, out=388, augmentation=spec, device=device)
        generator = torch.Generator(device=device).manual_seed(0)
        for size in (1, 8):

            def batch(batcher=batcher, generator=generator, device=device, size=size):
                batcher.cut(batcher.draw(generator, size))
                if device == "cuda":
                    torch.cuda.synchronize()

            seconds = median_seconds(batch, args.repeats) / size
            speedup = cpu / seconds
            print(
                f"  torch ({device:<4}), {size} per batch: {seconds * 1e3:6.1f} ms/tile   "
                f"{speedup:5.1f}x the numpy speed"
            )
    if len(devices) == 1:
        print("  torch (cuda): no GPU on this machine")


if __name__ == "__main__":
    main()
