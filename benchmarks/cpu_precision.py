"""em-cpu's training step and prediction on the CPU in four settings: float32 or bf16 autocast, contiguous
or channels_last. What ``precision = "auto"`` and ``memory_format = "auto"`` choose on a CPU with bf16 in
hardware (:mod:`unetbench.system.devices`) comes from this table.

A step is ``Trainer.step`` with em-cpu.toml's settings (batch 2 of 252 px tiles drawn and deformed from 20
random 512 x 512 slices, Adam); prediction is one 512 x 512 slice with em-cpu's overlap-tile (one 604 px
tile) and 8-fold test-time averaging. The four settings are timed alternately, one call each per round,
and each figure is the median over rounds (a machine whose speed drifts affects all four alike). It writes
its table, with the commit, the processor and the command, to ``--out`` (Markdown).

    python benchmarks/cpu_precision.py [--rounds 8] [--out reports/benchmarks/cpu-precision.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from _timing import result_file  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.inference.tiling import predict_image
from unetbench.model.unet import unet_from_spec
from unetbench.records.provenance import git_revision, hardware
from unetbench.system import devices
from unetbench.system.atomic_writes import atomic_write_text
from unetbench.training.trainer import Trainer

SPEC = Path(__file__).resolve().parents[1] / "challenges" / "em-cpu.toml"
SETTINGS = [
    ("fp32", "contiguous"),
    ("fp32", "channels_last"),
    ("bf16", "contiguous"),
    ("bf16", "channels_last"),
]


def make_trainers(samples, weight_maps, folder: Path) -> dict[tuple[str, str], tuple[Trainer, object]]:
    """One trainer of em-cpu per (precision, layout), each past two warm-up steps (allocator, kernels),
    with the ``[inference]`` section it predicts by."""
    base = load_spec(SPEC)
    trainers = {}
    for precision, layout in SETTINGS:
        keys = (
            "training.precision",
            "inference.precision",
            "training.memory_format",
            "inference.memory_format",
        )
        spec = apply_overrides(base, dict(zip(keys, (precision, precision, layout, layout), strict=True)))
        torch.manual_seed(0)
        trainer = Trainer(
            spec.training,
            spec.augmentation,
            unet_from_spec(spec.model),
            samples,
            weight_maps,
            device="cpu",
            checkpoint=folder / "c",
        )
        for _ in range(2):
            trainer.step()
        trainers[precision, layout] = trainer, spec.inference
    return trainers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=result_file, default=None, help="write the table here (Markdown)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    slices = [rng.random((512, 512), dtype=np.float32) for _ in range(20)]
    samples = [SimpleNamespace(key=str(i), image=s, target=s > 0.5) for i, s in enumerate(slices)]
    weight_maps = {s.key: (1 + 9 * rng.random((512, 512))).astype(np.float32) for s in samples}
    with tempfile.TemporaryDirectory() as folder:
        trainers = make_trainers(samples, weight_maps, Path(folder))
        steps = {key: [] for key in trainers}
        predictions = {key: [] for key in trainers}
        for _ in range(args.rounds):
            for key, (trainer, inference) in trainers.items():
                start = time.perf_counter()
                trainer.step()
                steps[key].append(time.perf_counter() - start)
                trainer.model.eval()
                start = time.perf_counter()
                predict_image(trainer.model, slices[0], inference, device="cpu")
                predictions[key].append(time.perf_counter() - start)
    commit, dirty = git_revision()
    machine = hardware("cpu")
    reference = statistics.median(steps["fp32", "contiguous"])
    lines = [
        f"# em-cpu on the CPU: precision and memory layout ({machine.processor}, {machine.cpu_cores} cores)",
        "",
        f"- command: `python {' '.join(sys.argv)}`",
        f"- commit: `{(commit or 'unknown')[:12]}{'+changes' if dirty else ''}`; torch {torch.__version__}; "
        f"bf16 in hardware: {'yes' if devices.native_bf16() else 'no'} (what `auto` decides by)",
        f"- medians of {args.rounds} alternating rounds; a step is batch 2 of 252 px tiles, a prediction one "
        "512 x 512 slice with 8-fold test-time averaging",
        "",
        "| precision | memory format | ms per step | vs float32 contiguous | s per slice predicted |",
        "|---|---|---:|---:|---:|",
    ]
    for key in trainers:
        step = statistics.median(steps[key])
        lines.append(
            f"| {key[0]} | {key[1]} | {step * 1e3:.0f} | {reference / step:.2f}x | "
            f"{statistics.median(predictions[key]):.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
