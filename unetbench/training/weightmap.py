"""The border weight map of the paper (Sec. 3, Eq. 2), exact to a stated bound and fast.

    w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))

d1 and d2 are the distances from a background pixel x to the border of the nearest and the second-nearest
cell; the term is what makes the network learn the thin separation borders between touching cells
(Fig. 3d). It applies to background pixels (target 0): inside a cell d1 is 0 and the paper's figure shows
no border weight there. Cells are the instance labels restricted to the foreground of the target, so
the separation pixels the CTC adapter removes between touching cells count as background, as they should.

w_c balances the class frequencies: ``class_balance_weights`` gives w_c = N / (K N_c) (the mean of w_c
over the pixels it was computed from is 1), from one image ("per-image") or from all training images
("dataset").

Speed: one Euclidean distance transform per cell over the whole image (:func:`border_weight_map_naive`)
costs about a second per 512x512 ISBI slice. :func:`border_weight_map` computes each cell's distances
only inside its bounding box widened by a margin M. A pixel farther than M from a cell cannot have that
cell among the two whose distances matter: if d1 + d2 <= M both cells lie within M, and their distances
are exact in the boxes; otherwise the border term is below w0 exp(-M^2 / (2 sigma^2)). With
M = ceil(sigma sqrt(2 ln(w0 / tolerance))) the result differs from the naive one by less than
``tolerance`` (1e-3 by default) everywhere.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components


def cells_of(target: np.ndarray, instances: np.ndarray | None) -> np.ndarray:
    """Instance labels of the cells: ``instances`` on the target's foreground, or the 4-connected
    components of the foreground when no instances are given."""
    foreground = target > 0
    if instances is None:
        return connected_components(foreground, connectivity=1).astype(np.int32)
    return np.where(foreground, instances, 0).astype(np.int32)


def class_balance_weights(targets, classes: int = 2) -> np.ndarray:
    """w_c = N / (K N_c) from one or several targets: the weight of each class, mean 1 over the pixels.
    A class absent from the targets gets weight 0 (there is nothing to weigh)."""
    counts = np.zeros(classes, dtype=np.float64)
    for target in [targets] if isinstance(targets, np.ndarray) else targets:
        counts += np.bincount(np.asarray(target).ravel().astype(np.int64), minlength=classes)[:classes]
    total = counts.sum()
    return np.where(counts > 0, total / (classes * np.maximum(counts, 1)), 0.0)


def border_margin(w0: float, sigma: float, tolerance: float) -> int:
    """The box margin that keeps the truncation error of :func:`border_weight_map` below ``tolerance``."""
    if w0 <= tolerance:
        return 0
    return math.ceil(sigma * math.sqrt(2.0 * math.log(w0 / tolerance)))


def _two_nearest(cells: np.ndarray, margin: int | None) -> tuple[np.ndarray, np.ndarray]:
    """d1, d2: distances of every pixel to its nearest and second-nearest cell (inf where unknown)."""
    height, width = cells.shape
    d1 = np.full(cells.shape, np.inf)
    d2 = np.full(cells.shape, np.inf)
    boxes = ndimage.find_objects(cells)
    for index, box in enumerate(boxes, start=1):
        if box is None:
            continue
        if margin is None:
            region = (slice(0, height), slice(0, width))
        else:
            region = (
                slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height)),
                slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width)),
            )
        distance = ndimage.distance_transform_edt(cells[region] != index)
        near, second = d1[region], d2[region]
        second[...] = np.where(distance < near, near, np.minimum(second, distance))
        near[...] = np.minimum(near, distance)
    return d1, d2


def _assemble(target, d1, d2, w0, sigma, class_weights) -> np.ndarray:
    background = target == 0
    border = np.where(background, w0 * np.exp(-((d1 + d2) ** 2) / (2.0 * sigma**2)), 0.0)
    if class_weights is None:
        balance = np.ones(target.shape)
    else:
        balance = np.asarray(class_weights, dtype=np.float64)[target.astype(np.int64)]
    return (balance + np.nan_to_num(border, nan=0.0)).astype(np.float32)


def border_weight_map(
    target: np.ndarray,
    instances: np.ndarray | None = None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
    tolerance: float = 1e-3,
) -> np.ndarray:
    """Eq. 2 of the paper for one image: (H, W) float32 weights, within ``tolerance`` of the naive map.

    Parameters
    ----------
    target : (H, W) integer, 1 = cell / foreground, 0 = background / membrane
    instances : (H, W) integer cell labels, or None to use the 4-connected components of the target
    w0, sigma : the paper's 10 and 5 px by default
    class_weights : per-class w_c (see :func:`class_balance_weights`), or None for w_c = 1
    tolerance : bound on the difference to :func:`border_weight_map_naive`
    """
    cells = cells_of(target, instances)
    d1, d2 = _two_nearest(cells, border_margin(w0, sigma, tolerance))
    return _assemble(target, d1, d2, w0, sigma, class_weights)


def border_weight_map_naive(
    target: np.ndarray,
    instances: np.ndarray | None = None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights=None,
) -> np.ndarray:
    """The reference: one distance transform per cell over the whole image (slow: tests, benchmarks)."""
    cells = cells_of(target, instances)
    d1, d2 = _two_nearest(cells, None)
    return _assemble(target, d1, d2, w0, sigma, class_weights)


def training_weight_maps(samples, weightmap) -> dict[str, np.ndarray]:
    """Weight maps of the training samples, computed once each: ``{sample.key: (H, W) float32}``.

    ``weightmap`` is a :class:`~unetbench.spec.WeightmapSpec`. Disabled: w = w_c only (class balance as
    configured, no border term). ``class_balance``: "dataset" uses the class frequencies of all the
    training targets, "per-image" those of each image, "none" w_c = 1.
    """
    targets = [s.target for s in samples]
    shared = class_balance_weights(targets) if weightmap.class_balance == "dataset" else None
    maps = {}
    for sample in samples:
        if weightmap.class_balance == "none":
            balance = None
        else:
            balance = shared if shared is not None else class_balance_weights(sample.target)
        w0 = weightmap.w0 if weightmap.enabled else 0.0
        maps[sample.key] = border_weight_map(
            sample.target, sample.instances, w0=w0, sigma=weightmap.sigma, class_weights=balance
        )
    return maps
