"""The memory a spec's training step and inference batch need, from the layer sizes
(:mod:`unetbench.model.sizes`), and the one line that refuses a spec a device cannot hold. No torch."""

from __future__ import annotations

from unetbench.model.sizes import format_bytes, inference_bytes, training_step_bytes, unet_kwargs
from unetbench.spec import ChallengeSpec


def memory_estimates(spec: ChallengeSpec) -> dict[str, int]:
    """Bytes of one training step and of one inference batch, from the layer sizes."""
    network = unet_kwargs(spec.model)
    return {
        "training": training_step_bytes(spec.training.tile_size, spec.training.batch_size, **network),
        "inference": inference_bytes(spec.inference.tile_size, spec.inference.batch_size, **network),
    }


def memory_problem(
    spec: ChallengeSpec, available: int, where: str, *, runs: int = 1
) -> tuple[str, str] | None:
    """The key and the message for a step that needs more than ``available`` bytes, else None; ``runs``
    runs at once on the same device (``--runs-per-device``) need ``runs`` times a run's peak."""
    estimates = memory_estimates(spec)
    for part, section in (("training", spec.training), ("inference", spec.inference)):
        if estimates[part] > available:
            return (
                f"{part}.tile_size",
                f"{section.tile_size} px tiles in batches of {section.batch_size} with "
                f"{spec.model.base_channels} base channels need about {format_bytes(estimates[part])} per "
                f"{'training step' if part == 'training' else 'forward pass'} (estimated from the layer "
                f"sizes), more than {where} ({format_bytes(available)}); use a smaller {part}.tile_size or "
                f"{part}.batch_size",
            )
    peak = max(estimates.values())  # a run trains or predicts, never both at once
    if peak * runs > available:
        return (
            "--runs-per-device",
            f"{runs} runs at once need about {format_bytes(peak * runs)} ({format_bytes(peak)} each, "
            f"estimated from the layer sizes), more than {where} ({format_bytes(available)}); give at most "
            f"{available // peak}",
        )
    return None
