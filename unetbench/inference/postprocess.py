"""Cell instances from a probability map, as the authors' release makes them.

The release's cell scripts (u-net-release-2015-10-02, the PhC-U373 and DIC-HeLa segmentation) take the
arg-max of the two soft-max classes, label its connected components with MATLAB's ``bwconncomp`` (8
neighbours by default) and remove segments of at most 500 px (PhC-U373). Here:

1. foreground = P(cell) > 0.5, which is the arg-max of two classes (a tie goes to the first class,
   background, as ``argmax`` does);
2. holes (background enclosed by a segment) are kept as background unless ``fill_holes`` is set; the
   release does not fill them;
3. connected components with ``connectivity`` 8 (diagonal neighbours join) or 4;
4. segments of at most ``remove_small`` pixels are removed, and the rest renumbered 1..n.

The release also restricts its output near the image border for the challenge's field of interest; we
have not been able to confirm that rule's exact form from the release's scripts, so it is not applied:
the scores count every segment, up to the border.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.measure import label
from skimage.segmentation import relabel_sequential


def cell_instances(probability: np.ndarray, postprocess) -> np.ndarray:
    """(H, W) instance labels (0 = background, 1..n cells) of a P(cell) map, as a
    :class:`~unetbench.spec.PostprocessSpec` says (module docstring)."""
    foreground = np.asarray(probability) > 0.5
    if postprocess.fill_holes:
        foreground = ndimage.binary_fill_holes(foreground)
    labels = label(foreground, connectivity=2 if postprocess.connectivity == 8 else 1)
    if postprocess.remove_small and labels.max():
        sizes = np.bincount(labels.ravel())
        small = sizes <= postprocess.remove_small
        small[0] = False
        labels[small[labels]] = 0
        labels = relabel_sequential(labels)[0]
    return labels
