"""Speaker clustering of window embeddings: average-linkage agglomerative clustering on
cosine distance, each cut cleaned (tiny and too-close clusters merge, windows move to their
nearest centroid), and the speaker count chosen by mean silhouette within the configured bounds."""

from __future__ import annotations

import numpy as np

from .diarize_settings import DiarizationSettings


def normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _centroids(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    return normalise(np.stack([emb[labels == c].mean(axis=0) for c in range(k)]))


def _compact(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..k-1 in order of first appearance (time order of the windows)."""
    order: dict[int, int] = {}
    for lab in labels.tolist():
        order.setdefault(lab, len(order))
    return np.array([order[lab] for lab in labels.tolist()], dtype=int), len(order)


def cluster_embeddings(embeddings: np.ndarray, settings: DiarizationSettings) -> tuple[np.ndarray, np.ndarray]:
    """(label per window, centroid per speaker), labels 0..k-1 in order of first appearance.

    Average-linkage agglomerative clustering on cosine distance.  One speaker when even the
    last merge of the tree (the two most different groups of windows) is closer than
    ``threshold``; otherwise the tree is cut into k = 2..max_speakers clusters, each cut
    cleaned (see ``_cut``: tiny clusters and clusters closer than ``threshold`` merge, windows
    move to their nearest centroid), and the k whose clusters are best separated (mean
    silhouette, cosine) is the estimated speaker count, never below ``min_speakers``.
    Deterministic: no random start, ties go to fewer speakers."""
    from scipy.cluster.hierarchy import linkage

    emb = normalise(np.asarray(embeddings, dtype=np.float64))
    n = len(emb)
    lo, hi = settings.min_speakers, min(settings.max_speakers, n)
    if n < 2 or hi < 2 or (lo <= 1 and n < 2 * settings.min_cluster_windows):
        return np.zeros(n, dtype=int), normalise(emb.mean(axis=0, keepdims=True)) if n else emb[:0]
    tree = linkage(emb, method="average", metric="cosine")
    if lo <= 1 and tree[-1, 2] < settings.threshold:
        return np.zeros(n, dtype=int), normalise(emb.mean(axis=0, keepdims=True))
    best: tuple[float, np.ndarray] | None = None
    for k in range(max(2, lo), hi + 1):
        labels = _cut(tree, emb, k, settings)
        if len(set(labels.tolist())) < max(2, lo):
            continue
        score = silhouette(emb, labels)
        if best is None or score > best[0] + 1e-9:
            best = (score, labels)
    if best is None:  # every cut collapsed (too few windows per cluster)
        if lo <= 1:
            return np.zeros(n, dtype=int), normalise(emb.mean(axis=0, keepdims=True))
        best = (0.0, _cut(tree, emb, lo, settings))
    labels, k = _compact(best[1])
    return labels, _centroids(emb, labels, k)


def _cut(tree: np.ndarray, emb: np.ndarray, k: int, settings: DiarizationSettings) -> np.ndarray:
    """The tree cut into k clusters, then cleaned until nothing changes: a cluster of fewer
    than ``min_cluster_windows`` windows joins the nearest one; two clusters whose windows are
    on average closer than ``threshold`` merge; windows move to their nearest centroid (k-means
    steps from the tree's partition).  Never below ``min_speakers`` clusters."""
    from scipy.cluster.hierarchy import fcluster

    lo = max(settings.min_speakers, 1)
    dist = 1.0 - emb @ emb.T
    labels, k = _compact(fcluster(tree, t=k, criterion="maxclust"))
    for _ in range(50):
        before = labels.copy()
        while k > lo:
            sizes = np.bincount(labels, minlength=k)
            pair = None
            small = int(np.argmin(sizes))
            if sizes[small] < settings.min_cluster_windows:  # a cough, a window across a turn change
                sims = _centroids(emb, labels, k)[small] @ _centroids(emb, labels, k).T
                sims[small] = -np.inf
                pair = (small, int(np.argmax(sims)))
            else:
                between = np.array(
                    [
                        [dist[np.ix_(labels == a, labels == b)].mean() if a != b else np.inf for b in range(k)]
                        for a in range(k)
                    ]
                )
                a, b = np.unravel_index(int(np.argmin(between)), between.shape)
                if between[a, b] < settings.threshold:
                    pair = (int(a), int(b))
            if pair is None:
                break
            labels[labels == pair[0]] = pair[1]
            labels, k = _compact(labels)
        moved = np.argmax(emb @ _centroids(emb, labels, k).T, axis=1)
        if len(set(moved.tolist())) >= min(k, lo):
            labels, k = _compact(moved)
        if np.array_equal(labels, before):
            break
    return labels


def silhouette(emb: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette with cosine distance (a window alone in its cluster scores 0)."""
    dist = 1.0 - emb @ emb.T
    clusters = sorted(set(labels.tolist()))
    if len(clusters) < 2:
        return 0.0
    means = np.stack([dist[:, labels == c].mean(axis=1) for c in clusters], axis=1)  # (n, k)
    sizes = np.array([(labels == c).sum() for c in clusters])
    scores = []
    for i, lab in enumerate(labels.tolist()):
        own = clusters.index(lab)
        if sizes[own] < 2:
            scores.append(0.0)
            continue
        a = means[i, own] * sizes[own] / (sizes[own] - 1)  # without the window itself
        b = min(means[i, j] for j in range(len(clusters)) if j != own)
        scores.append((b - a) / max(a, b) if max(a, b) > 0 else 0.0)
    return float(np.mean(scores))
