"""Predicting a run's images with its network, as the run's stages do (validation, the untrained and
the trained scores), showing progress."""

from __future__ import annotations

import numpy as np

from unetbench.spec import ChallengeSpec


def probabilities(
    model, samples, spec: ChallengeSpec, device, reporter=None, title: str = "", *, tta: str | None = None
) -> list[np.ndarray]:
    """P(cell / foreground) of each sample (DESIGN.md: the second class), by the spec's tiling and
    test-time averaging (``tta`` overrides the spec's); ``reporter`` (a
    :class:`~unetbench.run.progress.Reporter`) shows the images done under ``title``."""
    from unetbench.inference.tiling import predict_image  # torch: only where a network predicts

    model.eval()
    if reporter is None:
        return [predict_image(model, s.image, spec.inference, device=device, tta=tta)[1] for s in samples]
    maps = []
    with reporter.items(title, len(samples)) as advance:
        for sample in samples:
            maps.append(predict_image(model, sample.image, spec.inference, device=device, tta=tta)[1])
            advance()
    return maps
