"""Training throughput of the paper's full U-Net: 572x572 tiles per second and FLOP utilisation.

One training step = one 572x572 tile (the paper's batch), forward and backward, weighted soft-max
cross-entropy, SGD with momentum 0.99; bf16 autocast and channels_last on CUDA, float32 on the CPU.
The FLOP count per tile is computed here from the network's layers (2 FLOPs per multiply-add; backward =
2 x forward) and printed next to the 902.6 GFLOP the issue states. Utilisation is given against a dense
matrix multiplication measured in the same run on the same device (bf16 on CUDA, float32 on the CPU),
so the ratio needs no vendor peak figure.

    python benchmarks/train_throughput.py [--steps N] [--device auto|cpu|cuda] [--batch 1 4 8 16]
                                          [--compile off|on|both]
"""

from __future__ import annotations

import argparse
import time

import torch
from _timing import device_and_name  # noqa: I001 - the benchmarks folder is on sys.path
from torch import nn

from unetbench.model.unet import UNet
from unetbench.training.loss import weighted_cross_entropy

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


def measure(model, optimizer, device, batch: int, steps: int, compiled: bool):
    """Seconds per training step at ``batch`` tiles and the peak memory (bytes; None on the CPU)."""
    cuda = device.type == "cuda"
    run = torch.compile(model) if compiled else model
    image = torch.rand(batch, 1, 572, 572, device=device)
    if cuda:
        image = image.contiguous(memory_format=torch.channels_last)
    target = torch.randint(0, 2, (batch, 388, 388), device=device)
    weights = torch.rand(batch, 388, 388, device=device) * 10

    def step():
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = run(image)
        loss = weighted_cross_entropy(logits.float(), target, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3 if compiled else 2):  # burn-in: compilation, allocator, kernel selection
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return seconds, (torch.cuda.max_memory_allocated() if cuda else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=None, help="measured steps (default: 3 on CPU, 30 on CUDA)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch", type=int, nargs="+", default=[1], help="tiles per step, e.g. 1 4 8 16")
    parser.add_argument(
        "--compile", default="off", choices=["off", "on", "both"], help="torch.compile the model"
    )
    args = parser.parse_args()
    device, name = device_and_name(args.device)
    cuda = device.type == "cuda"
    steps = args.steps or (30 if cuda else 3)
    print(
        f"device: {name}; torch {torch.__version__}; {'bf16 autocast, channels_last' if cuda else 'float32'}"
    )

    torch.manual_seed(0)
    model = UNet(in_channels=1, classes=2)
    flops = 3.0 * forward_flops(model, 572)  # forward + backward (2 x forward)
    print(
        f"FLOP per 572x572 training tile (forward + backward): {flops / 1e9:.1f} G (stated: {STATED_GFLOP} G)"
    )
    model.to(device)
    if cuda:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99)
    reference = matmul_rate(
        device, torch.bfloat16 if cuda else torch.float32, 8192 if cuda else 2048, 20 if cuda else 5
    )
    print(f"reference: dense matmul on the same device {reference / 1e12:.3f} TFLOP/s")
    print()
    print("| batch | compile | ms/step | tiles/s | TFLOP/s | utilisation vs matmul | peak memory |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.compile]
    for compiled in modes:
        for batch in args.batch:
            seconds, peak = measure(model, optimizer, device, batch, steps, compiled)
            achieved = flops * batch / seconds
            memory = "-" if peak is None else f"{peak / 2**30:.1f} GiB"
            print(
                f"| {batch} | {'on' if compiled else 'off'} | {seconds * 1e3:.1f} | {batch / seconds:.1f} | "
                f"{achieved / 1e12:.1f} | {achieved / reference:.1%} | {memory} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
