"""The training objective of the paper (Sec. 3, Eq. 1): pixel-wise soft-max with weighted cross-entropy."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over pixels of w(x) * -log p_{l(x)}(x), with p the soft-max over classes.

    The paper's energy E = sum_x w(x) log p_{l(x)}(x) (Eq. 1), negated and divided by the number of pixels
    so that the learning rate does not depend on the tile size.

    Parameters
    ----------
    logits : (B, K, H, W) float
    target : (B, H, W) integer class per pixel
    weights : (B, H, W) float, or None for w = 1 (plain cross-entropy)
    """
    if logits.shape[0] != target.shape[0] or logits.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} do not match")
    per_pixel = F.cross_entropy(logits.float(), target.long(), reduction="none")  # (B, H, W)
    if weights is None:
        return per_pixel.mean()
    if weights.shape != per_pixel.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and target {tuple(target.shape)} do not match")
    return (weights.to(per_pixel.dtype) * per_pixel).mean()
