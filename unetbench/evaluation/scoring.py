"""The spec's metrics of probability maps: how a run, a cross-validation and a comparison score what a
network predicted (EM: the ISBI 2012 metrics of the stack and of each slice; cells: instances as the
release makes them, against the reference instances). No torch."""

from __future__ import annotations

import numpy as np

from unetbench.inference.postprocess import cell_instances
from unetbench.metrics import (
    instance_scores,
    isbi2012_scores,
    isbi2012_scores_per_slice,
)
from unetbench.records.run_record import Scores
from unetbench.spec import ChallengeSpec


def score_maps(spec: ChallengeSpec, samples, maps: list[np.ndarray], *, names=None, per_image=True) -> Scores:
    """The spec's metrics of probability maps: the whole split's scores and each image's.

    EM: the ISBI 2012 metrics against the target (cell = 1), the stack and every slice from one pass.
    Cells: instances as the release makes them (:mod:`unetbench.inference.postprocess`, the spec's
    ``[postprocess]``), scored against the reference instances.
    """
    metrics = list(spec.evaluation.metrics)
    names = names or [s.key for s in samples]
    if spec.kind not in ("em", "cells"):
        raise ValueError(
            "score_maps needs a checked spec (unetbench.challenges.loading.check_spec sets its kind)"
        )
    if spec.kind == "em":
        truth = np.stack([s.target for s in samples])
        if not per_image:
            return Scores(isbi2012_scores(truth, np.stack(maps), metrics), {})
        aggregate, slices = isbi2012_scores_per_slice(truth, np.stack(maps), metrics)
        return Scores(aggregate, dict(zip(names, slices, strict=True)))
    results = [cell_instances(m, spec.postprocess) for m in maps]
    aggregate = instance_scores([s.instances for s in samples], results, metrics)
    per = {}
    if per_image:
        per = {
            name: instance_scores([s.instances], [r], metrics)
            for name, s, r in zip(names, samples, results, strict=True)
        }
    return Scores(aggregate, per)
