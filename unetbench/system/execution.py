"""What the spec's ``auto`` precision and layout became on the machine that ran: a record's
``execution`` (:func:`unetbench.system.devices.resolve` makes it). No torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecutionUsed:
    """What the spec's ``auto`` precision and layout became on the machine that ran
    (:func:`unetbench.system.devices.resolve`)."""

    training_precision: str  # fp32 or bf16
    training_memory_format: str  # channels_last or contiguous
    compiled: bool
    inference_precision: str
    inference_memory_format: str
    native_bf16: bool  # the CPU computes bf16 in hardware (what ``auto`` decides by on the CPU)

    def describe_training(self) -> str:
        return execution_phrase(self.training_precision, self.training_memory_format, self.compiled)

    def describe_inference(self) -> str:
        return execution_phrase(self.inference_precision, self.inference_memory_format, False)


def execution_phrase(precision: str, layout: str, compiled: bool) -> str:
    """One phrase for logs and reports, e.g. ``bf16 autocast, channels_last, torch.compile``."""
    words = ["bf16 autocast" if precision == "bf16" else "float32", layout]
    return ", ".join(words + (["torch.compile"] if compiled else []))
