"""Scaling out, in one run: data-parallel training tiles/s for 1 and N processes (gloo on the CPU), and
the Ray executor's overhead per task against the local executor.

**Data-parallel.** Each process is one rank of :class:`~unetbench.training.trainer.Trainer` exactly as
``torchrun -m unetbench run`` makes it (process group from :func:`unetbench.distributed.joined`, on the
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
                                 [--runs 4] [--iterations 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing

from unetbench import distributed

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "challenges" / "quickstart.toml"


def _rank(rank: int, world: int, port: int, spec_file: str, steps: int, threads: int, out: str) -> None:
    from unetbench.datasets import load_dataset
    from unetbench.datasets.splits import split_collection
    from unetbench.loader import load_spec
    from unetbench.model.unet import unet_from_spec
    from unetbench.training.trainer import Trainer
    from unetbench.training.weightmap import training_weight_maps

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    os.environ.update(MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    torch.set_num_threads(threads)
    spec = load_spec(Path(spec_file))
    with distributed.joined("cpu", lambda device: device) as group:
        split = split_collection(load_dataset(spec.data, None), spec.data.split)
        torch.manual_seed(spec.training.seed)
        model = unet_from_spec(spec.model)
        maps = training_weight_maps(split.train, spec.weightmap)
        trainer = Trainer(spec, model, split.train, maps, device="cpu", checkpoint=None, group=group)
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


def data_parallel(spec_file: Path, processes: list[int], steps: int) -> dict[int, float]:
    cores = os.cpu_count() or 1
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        for world in processes:
            out = Path(folder) / f"rate-{world}"
            threads = max(1, cores // world)
            args = (world, distributed.free_loopback_port(), str(spec_file), steps, threads, str(out))
            if world == 1:
                os.environ.pop("WORLD_SIZE", None)  # a single process: no process group
                _rank(0, *args)
            else:
                torch.multiprocessing.spawn(_rank, args=args, nprocs=world, join=True)
            rates[world] = float(out.read_text())
    return rates


def ray_overhead(runs: int, iterations: int) -> tuple[float, float, float]:
    """(seconds to start a local instance, local seconds per run, Ray seconds per run)."""
    from unetbench import ablation, ray_executor
    from unetbench.loader import apply_overrides, load_spec
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
        common = dict(seeds=seeds, grid="one", data_root=None, progress=False, log=lambda *_: None)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as a one-CPU task
        try:
            start = time.perf_counter()
            ablation.ablate(spec, spec_file, ["weightmap"], out=root / "local", **common)
            local = time.perf_counter() - start
        finally:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
        started = time.perf_counter() - start
        try:
            start = time.perf_counter()
            ablation.ablate(spec, spec_file, ["weightmap"], out=root / "ray", executor="ray", **common)
            on_ray = time.perf_counter() - start
        finally:
            ray.shutdown()
    count = 2 * seeds
    return started, local / count, on_ray / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", type=Path, default=QUICKSTART)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    from unetbench.results import git_revision, hardware

    machine = hardware("cpu")
    commit, dirty = git_revision()
    print(
        f"commit {commit}{' (dirty)' if dirty else ''}; {machine.processor}, {machine.cpu_cores} cores; "
        f"torch {torch.__version__}"
    )
    rates = data_parallel(args.spec, args.processes, args.steps)
    base = rates[args.processes[0]]
    print(f"\ndata-parallel training, {args.spec.name}, {args.steps} timed steps per process (gloo):")
    print("| processes | tiles/s | vs 1 process |")
    print("|---|---|---|")
    for world, rate in rates.items():
        print(f"| {world} | {rate:.1f} | {rate / base:.2f}x |")
    started, local, on_ray = ray_overhead(args.runs, args.iterations)
    print(f"\nablation executors, quickstart at {args.iterations} iterations, one run at a time:")
    print(f"- local: {local:.1f} s per run; ray (local instance, 1 CPU): {on_ray:.1f} s per run")
    print(f"- ray overhead per task: {on_ray - local:+.2f} s ({(on_ray - local) / local:+.1%} of a run)")
    print(f"- starting the local Ray instance: {started:.1f} s (once per ablation)")


if __name__ == "__main__":
    main()
