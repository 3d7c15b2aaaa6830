"""Grouping samples: pairs of hashes within a Hamming distance, and connected groups."""

from __future__ import annotations

import numpy as np

CHUNK_CELLS = 1_000_000  # pairwise distances computed this many at a time (memory bound)


def close_pairs(hashes: np.ndarray, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``i < j`` of the rows of ``hashes`` (N x W uint64 words) whose Hamming
    distance is at most ``max_bits``. All pairs, a block of rows at a time: N^2/2 word
    comparisons, a few seconds for 30,000 images."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    rows = max(1, CHUNK_CELLS // max(1, n))
    found_i, found_j = [], []
    for start in range(0, n, rows):
        block = hashes[start:start + rows]
        dist = np.bitwise_count(block[:, None, :] ^ hashes[None, :, :]).sum(-1, dtype=np.int32)
        bi, bj = np.nonzero(dist <= max_bits)
        bi += start
        keep = bi < bj
        found_i.append(bi[keep])
        found_j.append(bj[keep])
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)


def components(n: int, i: np.ndarray, j: np.ndarray) -> list[list[int]]:
    """The connected groups (of 2 or more) of the graph on ``n`` nodes with edges ``i``-``j``,
    each sorted, in the order of their first member."""
    if not len(i):
        return []
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    groups: dict[int, list[int]] = {}
    for node in np.unique(np.concatenate([i, j])):
        groups.setdefault(int(label[node]), []).append(int(node))
    return sorted((sorted(g) for g in groups.values() if len(g) > 1), key=lambda g: g[0])
