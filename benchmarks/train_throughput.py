"""Training throughput of the paper's full U-Net: 572x572 tiles per second, FLOP utilisation and the
training step's overhead.

A step is ``Trainer.step`` as ``unetbench run`` takes it with ``challenges/em.toml``'s settings: the batch's
tiles drawn, elastically deformed and cut on the device from 512x512 slices resident there, forward and
backward under the precision asked for, weighted soft-max cross-entropy in float32, SGD with momentum
0.99. The FLOP count per tile is computed from the network's layers (2 FLOPs per multiply-add; backward =
2 x forward) and printed next to the 902.6 GFLOP the issue states. Utilisation is against a dense matrix
multiplication of the same precision measured in the same run on the same device, so the ratio needs no
vendor peak figure.

**Overhead**: the step's time against a forward + backward of the same network, precision, layout and
compilation on a batch made beforehand (no tile sampling, no optimiser step), measured in the same run
and alternately with it: (step - forward and backward) / forward and backward. It is what the step adds
around the network's arithmetic: drawing and cutting the tiles, the loss bookkeeping and the SGD update.

    python benchmarks/train_throughput.py [--steps N] [--device auto|cpu|cuda] [--batch 1 4 8 16]
                                          [--precision auto fp32 bf16] [--compile off|on|both]
                                          [--warm-up N] [--out RESULT.md]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from _timing import count, device_and_name, recorded, result_file  # noqa: I001 - the benchmarks folder is on sys.path
from torch import nn

from unetbench.challenges.loading import apply_overrides, load_spec
from unetbench.model.unet import UNet
from unetbench.system import devices
from unetbench.training.loss import weighted_cross_entropy
from unetbench.training.trainer import Trainer

SPEC = Path(__file__).resolve().parents[1] / "challenges" / "em.toml"

STATED_GFLOP = 902.6


def forward_flops(model: nn.Module, size: int) -> float:
    """Multiply-adds x 2 of one forward pass, counted with hooks on the convolutions."""
    total = 0.0

    def count(module, inputs, output):
        nonlocal total
        # a transposed convolution scatters from every input pixel, a convolution gathers into every output
        pixels = inputs[0] if isinstance(module, nn.ConvTranspose2d) else output
        n, _, h, w = pixels.shape
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2.0 * n * h * w * module.in_channels * module.out_channels * k

    hooks = [
        m.register_forward_hook(count)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    ]
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    return total


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2.0 * n**3 * repeats / (time.perf_counter() - start)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(call, device, count: int) -> float:
    """Seconds for ``count`` calls of ``call``, the device's queue drained before and after."""
    synchronise(device)
    start = time.perf_counter()
    for _ in range(count):
        call()
    synchronise(device)
    return time.perf_counter() - start


def trainer_for(device, batch: int, precision: str, compiled: bool, folder: Path) -> Trainer:
    """A trainer of the paper's network with em.toml's augmentation on 30 random 512x512 slices."""
    spec = apply_overrides(
        load_spec(SPEC),
        {
            "training.batch_size": batch,
            "training.precision": precision,
            "training.compile": compiled,
            "inference.precision": precision,
        },
    )
    rng = np.random.default_rng(0)
    samples = [
        SimpleNamespace(
            key=str(i), image=rng.random((512, 512), dtype=np.float32), target=rng.random((512, 512)) > 0.5
        )
        for i in range(30)
    ]
    weight_maps = {s.key: (1 + 9 * rng.random((512, 512))).astype(np.float32) for s in samples}
    torch.manual_seed(0)
    model = UNet(in_channels=1, classes=2)
    return Trainer(
        spec.training,
        spec.augmentation,
        model,
        samples,
        weight_maps,
        device=device,
        checkpoint=folder / "unused.pt",
    )


def measure(trainer: Trainer, steps: int, warm_up: int | None = None):
    """Seconds per training step, seconds per forward + backward on a pre-made batch, peak memory.

    The two are timed alternately, in rounds (one call each on the CPU, blocks of 10 on a GPU), and each
    is the median over rounds: a machine whose speed drifts affects both alike.
    """
    device, cuda = trainer.device, trainer.device.type == "cuda"
    images, targets, weights = trainer.batch(0)
    images = images.contiguous(memory_format=trainer.memory_format)

    def forward_backward():
        with devices.autocast(trainer.training.precision, device):
            logits = trainer.forward(images)
        weighted_cross_entropy(logits.float(), targets, weights).backward()

    if warm_up is None:
        warm_up = 3 if trainer.training.compile else 2
    for _ in range(warm_up):  # compilation, allocator, kernel selection
        trainer.step()
        forward_backward()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    block = 10 if cuda else 1
    rounds = max(1, steps // block)
    step_times, network_times = [], []
    for _ in range(rounds):
        step_times.append(timed(trainer.step, device, block) / block)
        trainer.model.train()
        trainer.optimizer.zero_grad(set_to_none=True)  # as the step does, outside the timing
        network_times.append(timed(forward_backward, device, block) / block)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    return statistics.median(step_times), statistics.median(network_times), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps of each kind (default: 5 on CPU, 30 on CUDA)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="tiles per step, e.g. 1 4 8 16")
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["auto"],
        choices=["auto", "fp32", "bf16"],
        help="training.precision (auto: bf16 on CUDA, fp32 on the CPU)",
    )
    parser.add_argument("--compile", default="off", choices=["off", "on", "both"], help="training.compile")
    parser.add_argument(
        "--warm-up",
        type=count(0),
        default=None,
        help="untimed steps first (default: 2, 3 compiled; 0 to try it)",
    )
    parser.add_argument("--out", type=result_file, default=None, help="write the result here (Markdown)")
    args = parser.parse_args()
    device, name = device_and_name(args.device)
    with recorded(args.out, "Training throughput", device=device, markdown=True):
        table(args, device, name)


def table(args, device: torch.device, name: str) -> None:
    """Print the reference rates and the table, a row as soon as it is measured."""
    cuda = device.type == "cuda"
    steps = args.steps or (30 if cuda else 5)
    print(f"device: {name}; torch {torch.__version__}; tiles and settings of {SPEC.name}, random slices")
    flops = 3.0 * forward_flops(UNet(in_channels=1, classes=2), 572)  # forward + backward (2 x forward)
    print(
        f"FLOP per 572x572 training tile (forward + backward): {flops / 1e9:.1f} G (stated: {STATED_GFLOP} G)"
    )
    references = {}
    for precision in dict.fromkeys(devices.precision(p, device) for p in args.precision):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        references[precision] = matmul_rate(device, dtype, 8192 if cuda else 2048, 20 if cuda else 5)
        print(
            f"reference: dense {precision} matmul on the same device "
            f"{references[precision] / 1e12:.3f} TFLOP/s"
        )
    print()
    print(
        "| batch | precision | compile | ms/step | tiles/s | TFLOP/s | utilisation vs matmul | peak memory "
        "| forward + backward ms | overhead |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    with tempfile.TemporaryDirectory() as folder:
        for precision in args.precision:
            for compiled in modes:
                for batch in args.batch:
                    trainer = trainer_for(device, batch, precision, compiled, Path(folder))
                    seconds, network, peak = measure(trainer, steps, args.warm_up)
                    achieved = flops * batch / seconds
                    resolved = devices.precision(precision, device)
                    memory = "-" if peak is None else f"{peak / 2**30:.1f} GiB"
                    utilisation = achieved / references[resolved]
                    print(
                        f"| {batch} | {resolved} | {'on' if compiled else 'off'} | {seconds * 1e3:.1f} | "
                        f"{batch / seconds:.3g} | {achieved / 1e12:.2f} | {utilisation:.1%} "
                        f"| {memory} | {network * 1e3:.1f} | {(seconds - network) / network:+.1%} |",
                        flush=True,
                    )
                    del trainer
                    if cuda:
                        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
