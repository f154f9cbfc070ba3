"""Compiled kernels for the sequential parts of the ISBI 2012 metrics (numba, ``nogil``: threads per slice).

The official Fiji "Trainable Weka Segmentation" (TWS) code visits pixels one at a time and each step sees
the effect of the previous ones (simple-point flips, watershed flooding); vectorising changes the numbers,
so these loops stay loops, compiled.

Coordinates: arrays are indexed ``[y, x]``; "scan order x-outer / y-inner" is the official visiting order
(ImageJ stores images column-major in those loops).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --- simple points ---------------------------------------------------------------------------------
# Neighbour bit k of a 3x3 patch, in this order: (dy, dx) for k = 0..7.
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _components(patch: np.ndarray, connectivity: int) -> np.ndarray:
    """Label the non-zero pixels of a 3x3 patch (centre excluded), 4- or 8-connected; a tiny flood fill."""
    labels = np.zeros((3, 3), dtype=np.int64)
    steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        steps += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    current = 0
    for y in range(3):
        for x in range(3):
            if patch[y, x] and not labels[y, x] and (y, x) != (1, 1):
                current += 1
                stack = [(y, x)]
                labels[y, x] = current
                while stack:
                    cy, cx = stack.pop()
                    for dy, dx in steps:
                        ny, nx = cy + dy, cx + dx
                        if (
                            0 <= ny < 3
                            and 0 <= nx < 3
                            and (ny, nx) != (1, 1)
                            and patch[ny, nx]
                            and not labels[ny, nx]
                        ):
                            labels[ny, nx] = current
                            stack.append((ny, nx))
    return labels


def simple_point_table() -> np.ndarray:
    """256 booleans: is the centre of a 3x3 configuration simple for 4-connected foreground and
    8-connected background (Bertrand & Malandain 1994, 2D topological numbers T4 = T8 = 1)?

    Index bit k is neighbour ``_OFFSETS[k]``. T4 counts the 4-connected foreground components of the ring
    that touch a 4-neighbour of the centre; T8 counts the 8-connected background components of the ring.
    This is what TWS's ``topo(im, 4) == 1 && topo(inverted, 8) == 1`` computes.
    """
    table = np.zeros(256, dtype=np.bool_)
    for code in range(256):
        patch = np.zeros((3, 3), dtype=np.uint8)
        for k, (dy, dx) in enumerate(_OFFSETS):
            patch[1 + dy, 1 + dx] = (code >> k) & 1
        fg = _components(patch, 4)
        t4 = len({fg[1 + dy, 1 + dx] for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))} - {0})
        bg_patch = 1 - patch
        bg_patch[1, 1] = 0
        bg = _components(bg_patch, 8)
        t8 = len(set(bg.ravel().tolist()) - {0})
        table[code] = t4 == 1 and t8 == 1
    return table


SIMPLE = simple_point_table()


@njit(cache=True, nogil=True)
def _ring_code(img, x, y):
    """Neighbour bits of pixel (x, y) of a column-major ([x, y]) image, in the ``_OFFSETS`` (dy, dx) order."""
    code = 0
    k = 0
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            if img[x + dx, y + dy]:
                code |= 1 << k
            k += 1
    return code


@njit(cache=True, nogil=True)
def _stable_descending_order(keys):
    """Indices that sort non-negative float32 ``keys`` in descending order, ties kept in input order
    (Java's ``Collections.sort`` with ``Float.compare(o2.z, o1.z)``): an LSD radix sort on the bit
    patterns, which for non-negative floats order like the values."""
    m = keys.shape[0]
    bits = keys.view(np.uint32)
    order = np.arange(m)
    scratch = np.empty(m, dtype=np.int64)
    counts = np.empty(65537, dtype=np.int64)
    for shift in (0, 16):
        counts[:] = 0
        for i in range(m):
            digit = 65535 - ((bits[order[i]] >> shift) & 65535)  # descending
            counts[digit + 1] += 1
        for d in range(65536):
            counts[d + 1] += counts[d]
        for i in range(m):
            digit = 65535 - ((bits[order[i]] >> shift) & 65535)
            scratch[counts[digit]] = order[i]
            counts[digit] += 1
        order, scratch = scratch, order
    return order


@njit(cache=True, nogil=True)
def simple_point_warp(source, proposal, threshold, simple):
    """Warp ``source`` (uint8 0/1, the ground truth) towards ``proposal > threshold`` by simple-point flips.

    TWS ``WarpingError.simplePointWarp2d``: both images padded by one background pixel; passes until no
    mismatch is left or a pass flips nothing; each pass lists the mismatches in x-outer / y-inner order,
    sorts them stably by descending ``(float) |proposal - threshold|`` and flips, in that order, every one
    that is simple in the current, partly flipped source.

    Only listed pixels flip and a flip removes its mismatch, so the next pass's list is this pass's list
    without the flipped pixels, in the same order: one sort serves every pass.

    Returns the warped source (uint8, unpadded) and the number of passes made.
    """
    h, w = source.shape
    # Column-major working copies ([x, y]): the official x-outer / y-inner scans run over contiguous memory.
    src = np.zeros((w + 2, h + 2), dtype=np.uint8)
    tgt = np.zeros((w + 2, h + 2), dtype=np.uint8)
    xs = np.empty(h * w, dtype=np.int64)
    ys = np.empty(h * w, dtype=np.int64)
    keys = np.empty(h * w, dtype=np.float32)
    m = 0
    for x in range(w):
        for y in range(h):
            src[x + 1, y + 1] = 1 if source[y, x] else 0
            p = np.float64(proposal[y, x])  # the official comparison is in double precision
            tgt[x + 1, y + 1] = 1 if p > threshold else 0
            if src[x + 1, y + 1] != tgt[x + 1, y + 1]:
                xs[m] = x + 1
                ys[m] = y + 1
                keys[m] = np.float32(abs(p - threshold))
                m += 1
    order = _stable_descending_order(keys[:m])
    list_x = xs[:m][order]
    list_y = ys[:m][order]
    # A pixel found non-simple stays non-simple until a pixel of its 3x3 flips: remember when each was
    # last tested and when its neighbourhood last changed, and skip tests whose answer cannot differ.
    tested_at = np.full((w + 2, h + 2), -1, dtype=np.int64)
    changed_at = np.zeros((w + 2, h + 2), dtype=np.int64)
    clock = 0
    before = -1
    passes = 0
    while m != 0 and m != before:
        before = m
        passes += 1
        for i in range(m):
            x, y = list_x[i], list_y[i]
            clock += 1
            if tested_at[x, y] > changed_at[x, y]:
                continue
            if simple[_ring_code(src, x, y)]:
                src[x, y] = 1 - src[x, y]
                changed_at[x - 1 : x + 2, y - 1 : y + 2] = clock
            else:
                tested_at[x, y] = clock
        kept = 0
        for i in range(m):
            x, y = list_x[i], list_y[i]
            if src[x, y] != tgt[x, y]:
                list_x[kept], list_y[kept] = x, y
                kept += 1
        m = kept
    out = np.empty((h, w), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            out[y, x] = src[x + 1, y + 1]
    return out, passes


# Mismatch classes, as TWS numbers them.
MERGE, SPLIT, HOLE_ADDITION, OBJECT_DELETION, OBJECT_ADDITION, HOLE_DELETION = 1, 2, 4, 8, 16, 32


@njit(cache=True, nogil=True)
def _ring_fg_connected(warped, y0, x0):
    """Are the foreground pixels among the 8 neighbours 4-connected to each other within the ring itself?
    Walking the ring in order, 4-adjacent ring neighbours are consecutive; corners link two edges."""
    h, w = warped.shape
    ring_y = (-1, -1, -1, 0, 1, 1, 1, 0)  # clockwise from the top-left corner
    ring_x = (-1, 0, 1, 1, 1, 0, -1, -1)
    fg = np.zeros(8, dtype=np.bool_)
    for i in range(8):
        iy, ix = y0 + ring_y[i], x0 + ring_x[i]
        fg[i] = 0 <= iy < h and 0 <= ix < w and warped[iy, ix] != 0
    runs = 0
    for i in range(8):  # count runs of consecutive foreground around the ring
        if fg[i] and not fg[i - 1]:
            runs += 1
    if runs == 0:
        return True  # all foreground (one run with no start) or none
    return runs == 1


@njit(cache=True, nogil=True)
def _window_split(warped, y0, x0, radius, visited, queue_y, queue_x):
    """TWS's test for a foreground mismatch with two labels around it: set the centre to background in a
    (2r+1)^2 window of the warped source (outside the image = background), relabel the window 4-connected,
    and count the distinct labels (0 included) among the centre's 8 neighbours. More than 2: a split.

    Flood fills start from the foreground neighbours; one that reaches all of them settles the count
    early (one component), which is the common case.
    """
    h, w = warped.shape
    size = 2 * radius + 1
    c = radius  # the centre in window coordinates
    n_fg = 0
    has_background = False
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if dy == 0 and dx == 0:
                continue
            iy, ix = y0 + dy, x0 + dx
            if 0 <= iy < h and 0 <= ix < w and warped[iy, ix] != 0:
                n_fg += 1
            else:
                has_background = True
    if _ring_fg_connected(warped, y0, x0):
        return False  # one component (+ background): at most 2 labels
    touched = 0  # window pixels visited, to reset only those afterwards
    components = 0
    reached = 0
    split = False
    for dy in range(-1, 2):
        for dx in range(-1, 2):
            if (dy == 0 and dx == 0) or split:
                continue
            ny, nx = c + dy, c + dx
            iy, ix = y0 + dy, x0 + dx
            if not (0 <= iy < h and 0 <= ix < w and warped[iy, ix] != 0) or visited[ny, nx] != 0:
                continue
            components += 1
            visited[ny, nx] = components
            queue_y[touched], queue_x[touched] = ny, nx
            head, tail = touched, touched + 1
            reached += 1
            while head < tail and reached < n_fg:
                qy, qx = queue_y[head], queue_x[head]
                head += 1
                for sy, sx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    ty, tx = qy + sy, qx + sx
                    if not (0 <= ty < size and 0 <= tx < size) or visited[ty, tx] != 0:
                        continue
                    if ty == c and tx == c:
                        continue
                    iy, ix = y0 - radius + ty, x0 - radius + tx
                    if 0 <= iy < h and 0 <= ix < w and warped[iy, ix] != 0:
                        visited[ty, tx] = components
                        queue_y[tail], queue_x[tail] = ty, tx
                        tail += 1
                        if abs(ty - c) <= 1 and abs(tx - c) <= 1:
                            reached += 1
            touched = tail
            if components + (1 if has_background else 0) > 2:
                split = True
    for i in range(touched):
        visited[queue_y[i], queue_x[i]] = 0
    return split


@njit(cache=True, nogil=True)
def classify_mismatches(warped, labels, mismatch, radius):
    """Classify every remaining mismatch pixel (TWS ``classifyMismatches2d``); return counts per class.

    ``labels`` are the 4-connected components of ``warped`` (0 = background); U is the set of labels among
    a pixel's 8 neighbours inside the image. |U| = 1 and U = {0}: object deletion (centre foreground) or
    addition; |U| = 1, one object: hole addition (centre foreground) or deletion; |U| = 2: hole addition
    (centre background) or the window test (split / hole deletion); |U| >= 3: merge (centre background)
    or split. ``radius`` < 1 or larger than the image means the whole image is the window.

    Returns int64[6]: merges, splits, hole additions, object deletions, object additions, hole deletions.
    """
    h, w = warped.shape
    if radius < 1 or radius > w or radius > h:
        radius = max(h, w)  # the whole image fits in the window around any pixel
    size = 2 * radius + 1
    visited = np.zeros((size, size), dtype=np.int32)  # kept all-zero between calls
    queue_y = np.empty(size * size, dtype=np.int64)
    queue_x = np.empty(size * size, dtype=np.int64)
    counts = np.zeros(6, dtype=np.int64)
    found = np.empty(8, dtype=np.int64)
    for y in range(h):  # the counts do not depend on the visiting order
        for x in range(w):
            if not mismatch[y, x]:
                continue
            n = 0
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if dy == 0 and dx == 0:
                        continue
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w:
                        value = labels[ny, nx]
                        new = True
                        for k in range(n):
                            if found[k] == value:
                                new = False
                        if new:
                            found[n] = value
                            n += 1
            centre = labels[y, x] != 0
            if n == 1 and found[0] == 0:
                counts[3 if centre else 4] += 1
            elif n == 1:
                counts[2 if centre else 5] += 1
            elif n == 2:
                if not centre:
                    counts[2] += 1
                elif _window_split(warped, y, x, radius, visited, queue_y, queue_x):
                    counts[1] += 1
                else:
                    counts[5] += 1
            elif centre:
                counts[1] += 1
            else:
                counts[0] += 1
    return counts


# --- watershed thinning ----------------------------------------------------------------------------
_MASK, _WSHED, _INIT, _INQUEUE = -2, 0, -1, -3


@njit(cache=True, nogil=True)
def _neighbour(x, y, k):
    # TWS Neighborhood2DC4 order: left, up, right, down
    if k == 0:
        return x - 1, y
    if k == 1:
        return x, y - 1
    if k == 2:
        return x + 1, y
    return x, y + 1


@njit(cache=True, nogil=True)
def watershed_thinning(cell):
    """Labels of TWS ``WatershedTransform2D`` (Vincent-Soille flooding, 4-connectivity) applied to the
    binary image 0 where ``cell`` else 255: cell regions become basins 1..K, the membrane is flooded from
    them and only watershed lines (label 0) remain between basins; a membrane region that reaches no basin
    becomes a basin of its own.

    Ties follow the official order: pixels by level, then x-outer / y-inner; a FIFO queue; neighbours
    left, up, right, down; and TWS's single ``flag`` for pixels next to watershed lines.
    """
    h, w = cell.shape
    # Column-major ([x, y]) working arrays, so the x-outer / y-inner scans read contiguous memory.
    level_of = np.empty((w, h), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            level_of[x, y] = 0 if cell[y, x] else 1  # grey 0 for cells, 255 for membrane
    lab = np.full((w, h), _INIT, dtype=np.int32)
    fifo_x = np.empty(h * w + 1, dtype=np.int32)
    fifo_y = np.empty(h * w + 1, dtype=np.int32)
    current = 0
    flag = False
    for level in range(2):
        head, tail = 0, 0
        for x in range(w):  # mark this level, queue the pixels next to basins or watershed lines
            for y in range(h):
                if level_of[x, y] != level:
                    continue
                lab[x, y] = _MASK
                if current == 0:  # no basin exists yet (first level present): nothing to queue
                    continue
                for k in range(4):
                    u, v = _neighbour(x, y, k)
                    if 0 <= u < w and 0 <= v < h and lab[u, v] >= _WSHED:
                        fifo_x[tail], fifo_y[tail] = x, y
                        tail += 1
                        lab[x, y] = _INQUEUE
                        break
        while head < tail:  # extend the basins into this level
            x, y = fifo_x[head], fifo_y[head]
            head += 1
            for k in range(4):
                u, v = _neighbour(x, y, k)
                if not (0 <= u < w and 0 <= v < h):
                    continue
                if lab[u, v] > 0:
                    if lab[x, y] == _INQUEUE or (lab[x, y] == _WSHED and flag):
                        lab[x, y] = lab[u, v]
                    elif lab[x, y] > 0 and lab[x, y] != lab[u, v]:
                        lab[x, y] = _WSHED
                        flag = False
                elif lab[u, v] == _WSHED:
                    if lab[x, y] == _INQUEUE:
                        lab[x, y] = _WSHED
                        flag = True
                elif lab[u, v] == _MASK:
                    lab[u, v] = _INQUEUE
                    fifo_x[tail], fifo_y[tail] = u, v
                    tail += 1
        for x in range(w):  # new minima at this level
            for y in range(h):
                if level_of[x, y] != level or lab[x, y] != _MASK:
                    continue
                current += 1
                head, tail = 0, 1
                fifo_x[0], fifo_y[0] = x, y
                lab[x, y] = current
                while head < tail:
                    px, py = fifo_x[head], fifo_y[head]
                    head += 1
                    for k in range(4):
                        u, v = _neighbour(px, py, k)
                        if 0 <= u < w and 0 <= v < h and lab[u, v] == _MASK:
                            fifo_x[tail], fifo_y[tail] = u, v
                            tail += 1
                            lab[u, v] = current
    out = np.empty((h, w), dtype=np.int64)
    for y in range(h):
        for x in range(w):
            out[y, x] = lab[x, y] if lab[x, y] > 0 else 0  # INIT cannot remain; WSHED is 0
    return out


# --- connected components and contingency sums -----------------------------------------------------


@njit(cache=True, nogil=True)
def _find(parent, i):
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        parent[i], i = root, parent[i]
    return root


@njit(cache=True, nogil=True)
def label4(mask):
    """4-connected components of ``mask``: int64 labels 1..K (0 = background) and K. Label numbers are
    not the official ones; the metrics depend only on the partition."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)
    parent = np.zeros(h * w // 2 + 2, dtype=np.int64)
    nxt = 1
    for y in range(h):
        for x in range(w):
            if not mask[y, x]:
                continue
            up = labels[y - 1, x] if y > 0 else 0
            left = labels[y, x - 1] if x > 0 else 0
            if up == 0 and left == 0:
                if nxt >= parent.shape[0]:
                    grown = np.zeros(parent.shape[0] * 2, dtype=np.int64)
                    grown[: parent.shape[0]] = parent
                    parent = grown
                parent[nxt] = nxt
                labels[y, x] = nxt
                nxt += 1
            elif up == 0 or left == 0 or up == left:
                labels[y, x] = max(up, left)
            else:
                a, b = _find(parent, up), _find(parent, left)
                if a != b:
                    parent[max(a, b)] = min(a, b)
                labels[y, x] = min(a, b)
    final = np.zeros(nxt, dtype=np.int64)
    count = 0
    for i in range(1, nxt):
        root = _find(parent, i)
        if root == i:
            count += 1
            final[i] = count
    for y in range(h):
        for x in range(w):
            if labels[y, x]:
                labels[y, x] = final[_find(parent, labels[y, x])]
    return labels, count


@njit(cache=True, nogil=True)
def contingency_sums(order, a_labels, b_labels, n_b):
    """Sums over the overlap table of A (ground-truth cells, grouped: ``order`` lists the flat indices of
    the A > 0 pixels sorted by A label) and B (any labelling, 0 allowed), restricted to A > 0.

    With p_ij = |A=i, B=j| / n (n = pixels with A > 0), a_i = sum_j p_ij, b_j = sum_{i>=1} p_ij (j >= 1)
    and aux = sum_i p_i0, returns float64[7]:
    n, sum a_i^2, sum b_j^2, sum_{j>=1} p_ij^2, aux, sum p_ij ln p_ij (i, j >= 1), sum a_i ln a_i,
    and in element 7 sum b_j ln b_j — eight values in all.
    """
    n_total = order.shape[0]
    out = np.zeros(8, dtype=np.float64)
    if n_total == 0:
        return out
    n = np.float64(n_total)
    counts = np.zeros(n_b + 1, dtype=np.int64)
    column = np.zeros(n_b + 1, dtype=np.int64)
    touched = np.empty(n_total, dtype=np.int64)
    sum_a2 = 0.0
    sum_ab2 = 0.0
    aux = 0.0
    sum_ab_log = 0.0
    sum_a_log = 0.0
    start = 0
    while start < n_total:
        label = a_labels[order[start]]
        stop = start
        n_touched = 0
        while stop < n_total and a_labels[order[stop]] == label:
            b = b_labels[order[stop]]
            if counts[b] == 0:
                touched[n_touched] = b
                n_touched += 1
            counts[b] += 1
            stop += 1
        a_i = (stop - start) / n
        sum_a2 += a_i * a_i
        sum_a_log += a_i * np.log(a_i)
        for t in range(n_touched):
            b = touched[t]
            c = counts[b]
            p = c / n
            if b == 0:
                aux += p
            else:
                sum_ab2 += p * p
                sum_ab_log += p * np.log(p)
                column[b] += c
            counts[b] = 0
        start = stop
    sum_b2 = 0.0
    sum_b_log = 0.0
    for b in range(1, n_b + 1):
        if column[b]:
            p = column[b] / n
            sum_b2 += p * p
            sum_b_log += p * np.log(p)
    out[0] = n
    out[1] = sum_a2
    out[2] = sum_b2
    out[3] = sum_ab2
    out[4] = aux
    out[5] = sum_ab_log
    out[6] = sum_a_log
    out[7] = sum_b_log
    return out
