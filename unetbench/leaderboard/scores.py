"""``unetbench compare``: several methods' submissions on one ground truth, scored per image with the
official metrics, kept as one typed record from which the leaderboard report is rendered
(:mod:`unetbench.leaderboard.report`; the statistics are :mod:`unetbench.leaderboard.ranking`'s).

The methods are either files, as ``unetbench evaluate`` takes them (``--gt`` and ``[NAME=]PREDICTION``:
an EM probability stack, or a CTC result folder), or finished work of unetbench: a run folder (its
predictions of the images it evaluated) or an ablation or cross-validation folder (each variant's
out-of-fold stack: every labelled image, predicted by the network that did not train on it). Every method
must score the same images.

**Scores are cached** by content: the sha256 of the ground truth, of the method's predictions (the arrays
as read), of the metrics and of this module's scoring version. A comparison that adds one method to
cached ones scores only the new one. Entries are JSON files written atomically (a temporary file renamed
into place), so two comparisons started at once may write the same entry, and neither reads half of one.
The cache lives in ``$UNETBENCH_CACHE``, else ``scores/`` in the per-user cache folder; ``--cache``
names another. The ISBI 2012 metrics score the images of a stack in parallel over the cores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetbench.errors import UserError
from unetbench.records.run_record import Score

COMPARISON_SCHEMA = 1


SCORING_VERSION = 1  # raise when a metric's implementation changes what it returns: old entries go stale


CHALLENGES = ("em", "ctc")


PRIMARY = {"em": "rand_error", "ctc": "seg"}


@dataclass(frozen=True)
class MethodScores:
    name: str
    source: str  # the file, folder or run it came from
    digest: str  # sha256 of its predictions as read
    aggregate: dict[str, Score]  # the challenge's own score of all images
    per_image: dict[str, dict[str, Score]]  # image name -> metric -> score


@dataclass(frozen=True)
class Comparison:
    """One comparison: what ``compare.json`` holds, all the report is rendered from."""

    challenge: str  # "em" or "ctc": which metrics
    title: str  # where its report goes: reports/<title>/ (the challenge, or the runs' spec name)
    ground_truth: str
    ground_truth_digest: str
    images: list[str]
    metrics: list[str]
    primary: str
    higher_is_better: dict[str, bool]
    methods: list[MethodScores]
    replicates: int
    seed: int
    command: str
    commit: str | None
    dirty: bool | None
    versions: dict[str, str]
    schema: int = COMPARISON_SCHEMA

    @property
    def identifier(self) -> str:
        """``compare-<8 hex>``, from the ground truth, the methods, metrics, replicates and seed."""
        key = [self.ground_truth_digest, [(m.name, m.digest) for m in self.methods], self.metrics]
        key += [self.primary, self.replicates, self.seed]
        return "compare-" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8]

    def matrix(self, metric: str) -> np.ndarray:
        """(methods, images) of per-image scores; NaN where undefined."""
        return np.array(
            [[_number(m.per_image[image].get(metric)) for image in self.images] for m in self.methods]
        )


def _number(value) -> float:
    return math.nan if value is None else float(value)


@dataclass(frozen=True)
class Candidate:
    """A method as read, before it is scored."""

    name: str
    source: str
    predictions: list[np.ndarray]  # EM: P(cell) per image; cells: instance labels per image
    digest: str


@dataclass(frozen=True)
class Truth:
    challenge: str
    title: str
    source: str
    images: list[str]
    targets: list[np.ndarray]  # EM: labels (cell non-zero); cells: instance labels
    digest: str


def digest_of(arrays: list[np.ndarray]) -> str:
    """sha256 of arrays as read: their dtype, shape and bytes."""
    sha = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        sha.update(f"{array.dtype.str}{array.shape}".encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def cache_folder(given: Path | None = None) -> Path:
    if given is not None:
        return Path(given)
    if os.environ.get("UNETBENCH_CACHE"):
        return Path(os.environ["UNETBENCH_CACHE"])
    from unetbench.datasets import default_data_root

    return default_data_root() / "scores"


def _entry(cache: Path, truth: Truth, method: Candidate, metrics: list[str]) -> Path:
    key = json.dumps([SCORING_VERSION, truth.challenge, truth.digest, method.digest, sorted(metrics)])
    return cache / f"{hashlib.sha256(key.encode()).hexdigest()}.json"


def score_method(truth: Truth, method: Candidate, metrics: list[str]) -> tuple[dict, dict]:
    """(the challenge's score of all images, each image's), by the official metrics."""
    from unetbench.metrics import instance_scores, isbi2012_scores_per_slice

    if truth.challenge == "em":
        try:
            aggregate, slices = isbi2012_scores_per_slice(
                np.stack(truth.targets), np.stack(method.predictions), metrics
            )
        except ValueError as err:
            raise UserError(f"{method.name} ({method.source}): {err}") from None
        return aggregate, dict(zip(truth.images, slices, strict=True))
    aggregate = instance_scores(truth.targets, method.predictions, metrics)
    per = {
        image: instance_scores([ref], [mask], metrics)
        for image, ref, mask in zip(truth.images, truth.targets, method.predictions, strict=True)
    }
    return aggregate, per


def scored(
    truth: Truth, methods: list[Candidate], metrics: list[str], *, cache: Path, log: Callable[[str], None]
) -> list[MethodScores]:
    """Every method's scores, from the cache where they are there, else computed and cached."""
    from unetbench.system.atomic_writes import atomic_write_json

    results = []
    for method in methods:
        entry = _entry(cache, truth, method, metrics)
        kept = _read_entry(entry)
        if kept is None:
            log(f"scoring {method.name} ({len(truth.images)} images) ...")
            aggregate, per = score_method(truth, method, metrics)
            atomic_write_json(entry, {"aggregate": aggregate, "per_image": per})
        else:
            log(f"{method.name}: scores from the cache")
            aggregate, per = kept
        results.append(MethodScores(method.name, method.source, method.digest, aggregate, per))
    return results


def _read_entry(entry: Path) -> tuple[dict, dict] | None:
    """A cache entry, or None where there is none or it cannot be read (it is scored again)."""
    try:
        payload = json.loads(entry.read_text(encoding="utf-8"))
        return payload["aggregate"], payload["per_image"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def compare(
    truth: Truth,
    methods: list[Candidate],
    *,
    metrics: list[str] | None,
    primary: str | None,
    replicates: int,
    seed: int,
    cache: Path,
    log: Callable[[str], None] = print,
) -> Comparison:
    """Score every method (cached) and return the comparison's record."""
    from unetbench.metrics import METRICS, metrics_of
    from unetbench.records.provenance import command_line, git_revision

    if len(methods) < 2:
        raise UserError(f"compare needs at least two methods, got {len(methods)}")
    if replicates < 100:
        raise UserError(
            f"--replicates must be at least 100 (1000 or more for a rank interval), got {replicates}"
        )
    kind = "em" if truth.challenge == "em" else "cells"
    wanted = list(metrics or metrics_of(kind))
    for metric in wanted:
        if metric not in metrics_of(kind):
            raise UserError(
                f"--metrics: {metric!r} does not apply to {truth.challenge}; valid choices: "
                + ", ".join(metrics_of(kind))
            )
    primary = primary or (PRIMARY[truth.challenge] if PRIMARY[truth.challenge] in wanted else wanted[0])
    if primary not in wanted:
        raise UserError(f"--primary: {primary!r} is not among the metrics compared ({', '.join(wanted)})")
    results = scored(truth, methods, wanted, cache=cache, log=log)
    commit, dirty = git_revision()
    return Comparison(
        challenge=truth.challenge,
        title=truth.title,
        ground_truth=truth.source,
        ground_truth_digest=truth.digest,
        images=list(truth.images),
        metrics=wanted,
        primary=primary,
        higher_is_better={m: METRICS[m].higher_is_better for m in wanted},
        methods=results,
        replicates=replicates,
        seed=seed,
        command=command_line(),
        commit=commit,
        dirty=dirty,
        versions=_versions(),
    )


def _versions() -> dict[str, str]:
    """What scored: the packages the metrics run on (no torch: scoring files needs no network)."""
    import platform
    from importlib.metadata import version

    from unetbench import __version__

    found = {"unetbench": __version__, "python": platform.python_version()}
    for package in ("numpy", "scipy", "scikit-image", "numba"):
        found[package] = version(package)
    return found
