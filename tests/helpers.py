"""Small builders shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from unetbench.spec import DataSpec, SplitSpec, SyntheticSpec


def synthetic_data(
    dataset: str, *, samples: int = 4, height: int = 96, width: int = 128, seed: int = 3
) -> DataSpec:
    return DataSpec(
        dataset=dataset,
        split=SplitSpec(train=(0,), evaluation=(1,)),
        synthetic=SyntheticSpec(samples=samples, height=height, width=width, seed=seed),
    )


# --------------------------------------------------------------------------------------------------
# Where things are: the repository's, and the real data beside it (../shared, never copied in).

REPO = Path(__file__).resolve().parents[1]
CHALLENGES = REPO / "challenges"
QUICKSTART = CHALLENGES / "quickstart.toml"
EM = CHALLENGES / "em.toml"
EM_CPU = CHALLENGES / "em-cpu.toml"
REPORTS = REPO / "reports"
SHARED_DATA = REPO.parent / "shared" / "datasets"
SHARED_ISBI = SHARED_DATA / "isbi2012"
WRAPPER = Path(__file__).resolve().parent / "_wrapped_run.py"

# --------------------------------------------------------------------------------------------------
# Tiny runs: a 2-channel U-Net on 64 x 64 synthetic slices, a few milliseconds per step on the CPU.


def tiny_spec(iterations=6, **extra):
    from unetbench.challenges.loading import apply_overrides, load_spec

    return apply_overrides(
        load_spec(QUICKSTART),
        {
            "data.synthetic.samples": 6,
            "data.synthetic.height": 64,
            "data.synthetic.width": 64,
            "data.split.train": [0, 1, 2],
            "data.split.validation": [3],
            "data.split.evaluation": [4, 5],
            "model.base_channels": 2,
            "training.tile_size": 60,
            "training.batch_size": 2,
            "training.iterations": iterations,
            "training.checkpoint_every": 3,
            "training.validate_every": 2,
            "inference.tile_size": 60,
            "inference.tta": "none",  # one prediction per image: the quickstart's dihedral costs 8
            "report.overlays": 1,
            **extra,
        },
    )


def spec_trainer(spec, model, samples, weight_maps, **settings):
    """A :class:`~unetbench.training.trainer.Trainer` with the spec's training and augmentation sections."""
    from unetbench.training.trainer import Trainer

    return Trainer(spec.training, spec.augmentation, model, samples, weight_maps, **settings)


def write_spec(path: Path, spec) -> Path:
    from unetbench.spec import dump_spec

    path.write_text(dump_spec(spec))
    return path


def quiet(tmp_path: Path) -> dict:
    """Keyword arguments for runner.run: no output, reports under tmp_path."""
    return dict(progress=False, log=lambda *_: None, reports=tmp_path / "reports")


def weights(run_dir: Path, *, best: bool = False) -> dict:
    from unetbench.training.checkpoint import load_checkpoint

    state = load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")
    return state["best_model"] if best else state["model"]


def same_weights(a: dict, b: dict) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def start_run(args: list[str], *, cwd: Path, env: dict | None = None, **settings) -> subprocess.Popen:
    """``unetbench`` in a subprocess through tests/_wrapped_run.py, which reports every step on stderr
    (``iteration N``) and can slow steps down, kill or signal itself at a step, hang inside a checkpoint
    write or lower its file-size limit at a stage: ``step_seconds``, ``kill_at``, ``signal_at``,
    ``hang_in_checkpoint``, ``file_limit_at`` (see that file)."""
    environment = {**os.environ, **(env or {})}
    for name, value in settings.items():
        environment[f"UNETBENCH_TEST_{name.upper()}"] = str(value)
    return subprocess.Popen(
        [sys.executable, str(WRAPPER), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=str(cwd),
        env=environment,
    )


def wait_for_line(process: subprocess.Popen, predicate, timeout: float = 120) -> str:
    """Read the process's stderr until a line satisfies ``predicate``; return that line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            raise AssertionError(f"the process ended (status {process.wait()}) before the expected line")
        if predicate(line.strip()):
            return line.strip()
    raise AssertionError("timed out waiting for a line")


def wait_until(predicate, *, process: subprocess.Popen | None = None, timeout: float = 60, what: str) -> None:
    """Poll ``predicate`` until it holds; fail at the deadline, or when ``process`` ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (status {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.001)


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err
