"""Scaling out, in one run: data-parallel training tiles/s for 1 and N processes (gloo on the CPU), and
the Ray executor's overhead per task against the local executor.

**Data-parallel.** Each process is one rank of :class:`~unetbench.training.trainer.Trainer` exactly as
``torchrun -m unetbench run`` makes it (process group from :func:`unetbench.system.processes.joined`, on the
loopback), training the spec's network on its synthetic data; after a burn-in it times ``--steps`` steps
and the ranks meet at a barrier before and after. Tiles/s = processes x batch x steps / seconds. The
machine's cores are shared out: 1 process uses all of them as threads, N processes use cores / N each,
so the figure shows what splitting the same cores into ranks gives (on GPUs each rank has its own).

**Ray.** The same ablation (``--runs`` runs of the quickstart with ``--iterations`` iterations each,
baseline and no-weightmap over seeds) finished by the local executor and by the Ray executor on a local
instance with one CPU, so the tasks run one at a time like the local loop: (Ray - local) / runs is what
a task costs beyond its run (scheduling, a worker process, the progress board). Starting the instance is
given on its own line.

    python benchmarks/scaling.py [--spec challenges/quickstart.toml] [--processes 1 2] [--steps 30]
                                 [--runs 4] [--iterations 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing
from _timing import result_file, result_header, write_result  # noqa: I001 - the benchmarks folder is on sys.path

from unetbench.system import processes

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "challenges" / "quickstart.toml"


def _rank(rank: int, world: int, port: int, spec_file: str, steps: int, threads: int, out: str) -> None:
    from unetbench.challenges.loading import load_spec
    from unetbench.datasets import load_dataset
    from unetbench.datasets.splits import split_collection
    from unetbench.model.unet import unet_from_spec
    from unetbench.training.trainer import Trainer
    from unetbench.training.weightmap import training_weight_maps

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    os.environ.update(MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(threads)
    spec = load_spec(Path(spec_file))
    with processes.joined("cpu", lambda device: device) as group:
        split = split_collection(load_dataset(spec.data, None), spec.data.split)
        torch.manual_seed(spec.training.seed)
        model = unet_from_spec(spec.model)
        maps = training_weight_maps(split.train, spec.weightmap)
        trainer = Trainer(
            spec.training,
            spec.augmentation,
            model,
            split.train,
            maps,
            device="cpu",
            checkpoint=None,
            group=group,
        )
        for _ in range(3):  # burn-in: allocations, the first all-reduce buckets
            trainer.step()
        group.any(False)  # a barrier on the agreement path
        start = time.perf_counter()
        for _ in range(steps):
            loss = trainer.step()
        float(group.sum(loss))
        seconds = time.perf_counter() - start
        if group.leader:
            tiles = world * spec.training.batch_size * steps
            Path(out).write_text(f"{tiles / seconds}")
        trainer.release()
        group.leave()


def data_parallel(spec_file: Path, processes: list[int], steps: int, rounds: int) -> dict[int, list[float]]:
    """Tiles/s per process count, ``rounds`` times, the counts alternating (a drifting machine affects
    every count alike)."""
    cores = os.cpu_count() or 1
    rates: dict[int, list[float]] = {world: [] for world in processes}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for world in processes:
                out = Path(folder) / f"rate-{world}"
                threads = max(1, cores // world)
                args = (world, processes.free_loopback_port(), str(spec_file), steps, threads, str(out))
                if world == 1:
                    os.environ.pop("WORLD_SIZE", None)  # a single process: no process group
                    _rank(0, *args)
                else:
                    torch.multiprocessing.spawn(_rank, args=args, nprocs=world, join=True)
                rates[world].append(float(out.read_text()))
    return rates


def ray_overhead(runs: int, iterations: int, rounds: int) -> tuple[float, list[float], list[float]]:
    """(seconds to start a local instance, local seconds per run, Ray seconds per run), the executors
    alternating for ``rounds`` rounds."""
    from unetbench import ablation
    from unetbench.ablation import ray as ray_executor
    from unetbench.challenges.loading import apply_overrides, load_spec
    from unetbench.spec import dump_spec

    ray = ray_executor.import_ray(local=True)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        spec = apply_overrides(
            load_spec(QUICKSTART),
            {
                "training.iterations": iterations,
                "report.directory": str(root / "reports"),
                "report.overlays": 0,
            },
            source="benchmark",
        )
        spec_file = root / "spec.toml"
        spec_file.write_text(dump_spec(spec))
        seeds = max(1, runs // 2)
        count = 2 * seeds
        common = dict(seeds=seeds, progress=False)
        quiet = dict(log=lambda *_: None)
        start = time.perf_counter()
        # Ray rewrites 127.0.0.1 to the machine's network address unless told not to: keep it on the loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        started = time.perf_counter() - start
        local, on_ray = [], []
        try:
            for k in range(rounds):
                threads = torch.get_num_threads()
                torch.set_num_threads(1)  # as a one-CPU task
                try:
                    start = time.perf_counter()
                    # each ablation in a folder of its own: runs beside it of the same spec would be reused
                    out = root / f"local{k}" / "a"
                    request = ablation.AblationRequest(spec, spec_file, ("weightmap",), out=out, **common)
                    ablation.ablate(request, **quiet)
                    local.append((time.perf_counter() - start) / count)
                finally:
                    torch.set_num_threads(threads)
                start = time.perf_counter()
                out = root / f"ray{k}" / "a"
                request = ablation.AblationRequest(
                    spec, spec_file, ("weightmap",), out=out, executor="ray", **common
                )
                ablation.ablate(request, **quiet)
                on_ray.append((time.perf_counter() - start) / count)
        finally:
            ray.shutdown()
    return started, local, on_ray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=QUICKSTART)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=result_file, help="write the result here too (Markdown)")
    args = parser.parse_args()
    lines = result_header("Scaling out on this machine: data-parallel training and the Ray executor")
    rates = data_parallel(args.spec, args.processes, args.steps, args.rounds)
    base = statistics.median(rates[args.processes[0]])
    lines += [
        f"Data-parallel training, {args.spec.name}, {args.steps} timed steps per process (gloo on the "
        f"loopback), median of {args.rounds} alternating rounds (min-max):",
        "",
        f"| processes | tiles/s | vs {args.processes[0]} process(es) |",
        "|---|---|---|",
    ]
    for world, values in rates.items():
        rate = statistics.median(values)
        lines.append(f"| {world} | {rate:.1f} ({min(values):.1f}-{max(values):.1f}) | {rate / base:.2f}x |")
    started, local, on_ray = ray_overhead(args.runs, args.iterations, args.rounds)
    extra = [r - lo for r, lo in zip(on_ray, local, strict=True)]
    share = statistics.median(extra) / statistics.median(local)
    lines += [
        "",
        f"Ablation executors, quickstart at {args.iterations} iterations, {2 * max(1, args.runs // 2)} "
        f"runs one at a time, median of {args.rounds} alternating rounds:",
        "",
        f"- local: {statistics.median(local):.2f} s per run; ray (local instance, 1 CPU): "
        f"{statistics.median(on_ray):.2f} s per run",
        f"- ray overhead per task: {statistics.median(extra):+.2f} s (rounds: "
        f"{', '.join(f'{e:+.2f}' for e in extra)}; {share:+.1%} of a run)",
        f"- starting the local Ray instance: {started:.1f} s (once per ablation)",
    ]
    write_result(args.out, lines)


if __name__ == "__main__":
    main()
