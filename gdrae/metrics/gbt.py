"""Gradient-boosted trees: scikit-learn's ``GradientBoostingClassifier()``, vectorised.

disentanglement_lib's DCI fits ``GradientBoostingClassifier()`` at default
settings per factor. This module computes the same model - the same trees,
predictions and ``feature_importances_`` - an order of magnitude faster:

* 100 boosting rounds, learning rate 0.1; log loss, binomial for 2 classes
  (one tree per round) and multinomial for K > 2 (K trees per round, all
  fitted to the negative gradient of the same round);
* raw predictions start at the class-prior log-odds (priors clipped to
  [eps, 1 - eps]; symmetric multinomial logit ``log(p / geometric_mean(p))``
  for K > 2, ``logit(p)`` for 2 classes);
* regression trees of depth 3 on float32 features, squared-error criterion:
  the split maximising ``S_L^2 / n_L + S_R^2 / n_R`` over every feature and
  every boundary between consecutive sorted values that differ by more than
  1e-7 (in float32), threshold halfway between the two values; a node is a
  leaf at depth 3, with fewer than 2 samples, with impurity <= float64 eps or
  with no such boundary;
* leaf values are one Newton step: mean(-g) / mean(p (1 - p)), times
  (K - 1) / K for the multinomial loss, 0 where the denominator is below
  1e-150, with p recovered as ``y - (-g)``;
* ``feature_importances_``: per tree, the summed ``n * impurity - n_L *
  impurity_L - n_R * impurity_R`` of its splits per feature over the number of
  training samples; the mean over all trees with at least one split (all
  rounds, all classes), normalised to sum 1; zeros when no tree has a split.

The speed comes from growing all trees of a round at once: each feature is
sorted once, the samples of every node stay grouped in that order, and every
candidate split of a level is scored with one cumulative sum over the
presorted gradients.

Ties. scikit-learn visits features in a random order per node (seeded per
tree from ``random_state``) and keeps the first strictly better split. Here
splits within a relative 1e-11 of the best count as tied and the feature
scikit-learn would visit first wins (its generator is replayed in
``_visit_ranks``, assuming no feature is constant inside a node), then the
lowest threshold. Where scikit-learn's own sums of an exactly tied pair round
differently (for example splitting one sample off the top of a node by two
features, which happens in the first rounds, when gradients take two values),
its pick follows that rounding and this one can differ; the trees then
diverge and predictions and importances agree only approximately. Discrete
codes (constant features inside nodes, duplicated codes) tie more often.
disentanglement_lib passes no ``random_state``, so there its ties are random.

Reference: Friedman 2001, "Greedy Function Approximation: A Gradient Boosting
Machine"; scikit-learn ``GradientBoostingClassifier`` (1.9 defaults);
Locatello et al. 2019 (disentanglement_lib).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit, logit

N_ESTIMATORS = 100
LEARNING_RATE = 0.1
MAX_DEPTH = 3
_FEATURE_THRESHOLD = np.float32(1e-7)  # sorted values closer than this are not split apart
_EPSILON = np.finfo(np.float64).eps  # nodes this pure are leaves
_TIE = 1e-11  # relative score difference below which two splits count as equal
_INTERNAL = 2 ** MAX_DEPTH - 1  # internal-node slots of a full tree, heap order
_LEAVES = 2 ** MAX_DEPTH
_CHUNK = 8  # trees grown together
_RAND_R_MAX = 2 ** 31 - 1  # scikit-learn draws each tree's splitter seed below this


@dataclass(frozen=True)
class BoostedTrees:
    """A fitted booster: ``rounds`` x ``trees`` depth-3 trees stored as full heaps.

    A node that is not split has threshold +inf (all samples go left), so
    every sample ends in one of 8 leaf slots.
    """

    classes: np.ndarray        # (K,) sorted class labels
    init: np.ndarray           # (T,) initial raw prediction, T = 1 if K == 2 else K
    feature: np.ndarray        # (R, T, 7) split feature per internal slot
    threshold: np.ndarray      # (R, T, 7) float64, x <= threshold goes left
    value: np.ndarray          # (R, T, 8) leaf values (learning rate not applied)
    feature_importances: np.ndarray  # (D,) scikit-learn's feature_importances_

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions (n, T): init plus learning rate x leaf value, round by round."""
        x = np.asarray(x, dtype=np.float32)
        n = len(x)
        raw = np.tile(self.init, (n, 1))
        trees = np.arange(self.init.shape[0])
        for feature, threshold, value in zip(self.feature, self.threshold, self.value):
            node = np.zeros((n, len(trees)), dtype=np.intp)
            for depth in range(MAX_DEPTH):
                slot = node + (2 ** depth - 1)
                x_split = np.take_along_axis(x, feature[trees, slot], axis=1)
                node = 2 * node + (x_split > threshold[trees, slot])
            raw += LEARNING_RATE * value[trees, node]
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class labels: argmax of the raw predictions (raw >= 0 for two classes)."""
        raw = self.decision_function(x)
        if raw.shape[1] == 1:
            return self.classes[(raw[:, 0] >= 0).astype(int)]
        return self.classes[np.argmax(raw, axis=1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n, K): sigmoid or softmax of the raw predictions."""
        raw = self.decision_function(x)
        if raw.shape[1] == 1:
            p = expit(raw[:, 0])
            return np.stack([1 - p, p], axis=1)
        e = np.exp(raw - raw.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def _initial_raw(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Class-prior log-odds: logit(p1) for 2 classes, log(p / gmean(p)) otherwise."""
    eps = np.finfo(np.float64).eps
    prior = np.clip(np.bincount(y, minlength=num_classes) / len(y), eps, 1 - eps)
    if num_classes == 2:
        return np.array([logit(prior[1])])
    return np.log(prior / np.exp(np.mean(np.log(prior))))


def _negative_gradient(raw: np.ndarray, onehot: np.ndarray) -> np.ndarray:
    """y - p for every tree's target (n, T): sigmoid for 2 classes, softmax otherwise."""
    if raw.shape[1] == 1:
        return onehot - expit(raw)
    e = np.exp(raw - raw.max(axis=1, keepdims=True))
    return onehot - e / e.sum(axis=1, keepdims=True)


class _Level:
    """Per-node sums of a level: counts, gradient sums and squared sums, impurity."""

    def __init__(self, g: np.ndarray, node: np.ndarray, slots: int):
        trees = len(g)
        key = (np.arange(trees)[:, None] * slots + node).ravel()
        size = trees * slots
        self.count = np.bincount(key, minlength=size).reshape(trees, slots)
        self.sum = np.bincount(key, g.ravel(), minlength=size).reshape(trees, slots)
        squares = np.bincount(key, (g * g).ravel(), minlength=size).reshape(trees, slots)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / self.count
            self.impurity = np.where(self.count > 0, squares / self.count - mean * mean, 0.0)


def _visit_ranks(seeds: np.ndarray, num_features: int) -> np.ndarray:
    """scikit-learn's feature visiting order for the first 7 split nodes of each tree.

    Each tree's splitter seeds a xorshift generator with ``seeds`` and, per
    node it tries to split (depth-first, left first), draws features from a
    feature array it keeps permuting across nodes. Returns rank (T, 7, D):
    the position at which feature f is visited in the j-th such node. (Assumes
    no feature is constant within a node, as for continuous codes.)
    """
    trees = len(seeds)
    state = seeds.astype(np.uint32)
    features = np.tile(np.arange(num_features), (trees, 1))
    rank = np.zeros((trees, _INTERNAL, num_features), dtype=np.intp)
    rows = np.arange(trees)
    for j in range(_INTERNAL):
        for step in range(num_features):
            state = np.where(state == 0, np.uint32(1), state)
            state ^= state << np.uint32(13)
            state ^= state >> np.uint32(17)
            state ^= state << np.uint32(5)
            remaining = num_features - step
            pick = (state % np.uint32(2 ** 31)).astype(np.intp) % remaining
            rank[rows, j, features[rows, pick]] = step
            last = features[rows, remaining - 1].copy()
            features[rows, remaining - 1] = features[rows, pick]
            features[rows, pick] = last
    return rank


class _Scores:
    """Every candidate split of one level, per tree, feature and sorted position.

    ``idx`` (T, D, n) holds, per tree and feature, the samples grouped by node
    and sorted by that feature within each node.
    """

    def __init__(self, g, xt, idx, node, level, alive):
        trees, num_features, n = idx.shape
        self.n = n
        self.start = np.cumsum(level.count, axis=1) - level.count  # (T, slots)
        rows = np.arange(trees)[:, None]
        tree_offset = (rows * n)[:, :, None]
        self.pos_node = node.ravel().take(idx[:, 0, :] + tree_offset[:, 0])  # (T, n)
        cum = np.cumsum(g.ravel().take(idx + tree_offset), axis=2)
        # gradient sum before each node's first position, per feature
        before = np.where((self.start == 0)[:, None, :], 0.0,
                          cum[rows[:, :, None], np.arange(num_features)[None, :, None],
                              np.maximum(self.start - 1, 0)[:, None, :]])
        left_sum = cum - before[rows[:, :, None], np.arange(num_features)[None, :, None],
                                self.pos_node[:, None, :]]
        n_left = np.arange(1, n + 1)[None, :] - self.start[rows, self.pos_node]
        n_right = level.count[rows, self.pos_node] - n_left
        total = level.sum[rows, self.pos_node][:, None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            score = left_sum * left_sum / n_left[:, None, :]
            score += (total - left_sum) ** 2 / n_right[:, None, :]
        # boundary after sorted position p: same node, values apart by more than the threshold
        self.x_sorted = xt.ravel().take(idx + (np.arange(num_features) * n)[None, :, None])
        splittable = alive & (level.count >= 2) & (level.impurity > _EPSILON)
        valid = np.zeros(score.shape, dtype=bool)  # the last position never starts a boundary
        valid[:, :, :-1] = ((self.x_sorted[:, :, 1:] > self.x_sorted[:, :, :-1] + _FEATURE_THRESHOLD)
                            & (self.pos_node[:, 1:] == self.pos_node[:, :-1])[:, None, :]
                            & splittable[rows, self.pos_node[:, :-1]][:, None, :])
        self.score = np.where(valid, score, -np.inf)  # (T, D, n)
        # best score per (tree, feature, node): one reduceat over node segments
        # (segments of empty trailing nodes start at n - 1, whose score is always -inf)
        self.seg = np.minimum(self.start, n - 1)
        per_feature = np.maximum.reduceat(
            self.score.ravel(), (np.arange(trees * num_features).reshape(trees, num_features, 1) * n
                                 + self.seg[:, None, :]).ravel())
        self.per_feature = np.where((level.count < 2)[:, None, :], -np.inf,
                                    per_feature.reshape(trees, num_features, -1))
        best = self.per_feature.max(axis=1)  # (T, slots)
        self.split = np.isfinite(best)
        self.cutoff = np.where(self.split, best - _TIE * np.abs(best), np.inf)

    def choose(self, rank: np.ndarray) -> np.ndarray:
        """Feature per node among the tied best: the one visited first (rank (T, slots, D))."""
        tied = self.per_feature >= self.cutoff[:, None, :]
        return np.argmin(np.where(tied, rank.transpose(0, 2, 1), np.iinfo(np.intp).max), axis=1)

    def thresholds(self, feature: np.ndarray) -> np.ndarray:
        """Threshold per node for the chosen features: the first best boundary, midpoint."""
        trees, n = self.pos_node.shape
        rows = np.arange(trees)[:, None]
        chosen_score = self.score[rows, feature[rows, self.pos_node], np.arange(n)[None, :]]
        hit = chosen_score >= self.cutoff[rows, self.pos_node]
        position = np.where(hit, np.arange(n)[None, :], n)
        first = np.minimum.reduceat(position.ravel(), (rows * n + self.seg).ravel())
        first = np.minimum(first.reshape(trees, -1), n - 2)
        low = self.x_sorted[rows, feature, first].astype(np.float64)
        high = self.x_sorted[rows, feature, first + 1].astype(np.float64)
        return np.where(self.split, low / 2.0 + high / 2.0, np.inf)


def _descend(x32, node, feature, threshold):
    """Child slot of every sample: 2 * slot + (x[feature] > threshold) per tree."""
    rows = np.arange(len(node))[:, None]
    x_split = x32[np.arange(node.shape[1])[None, :], feature[rows, node]]
    return (2 * node + (x_split > threshold[rows, node])).astype(np.int8)


def _visited(level: _Level, alive: np.ndarray) -> np.ndarray:
    """Nodes scikit-learn tries to split (and so draws features for)."""
    return alive & (level.count >= 2) & (level.impurity > _EPSILON)


_DFS = (0, 1, 3, 4, 2, 5, 6)  # heap slots of the internal nodes in depth-first order


def _dfs_index(visited: np.ndarray, slot: int) -> np.ndarray:
    """Per tree, how many tried nodes precede heap ``slot`` depth-first (visited (T, 7))."""
    before = list(_DFS[:_DFS.index(slot)])
    return visited[:, before].sum(axis=1)


def _grow_round(g: np.ndarray, x32: np.ndarray, order: np.ndarray, rank: np.ndarray):
    """Grow one depth-3 tree per row of ``g`` (T, n) on the same samples.

    ``rank`` (T, 7, D) is scikit-learn's feature visiting order (``_visit_ranks``).
    Returns feature (T, 7), threshold (T, 7), leaf slot per sample (T, n) and
    unnormalised importances (T, D) (impurity decrease / n).
    """
    trees, n = g.shape
    num_features = x32.shape[1]
    xt = np.ascontiguousarray(x32.T)
    idx = np.broadcast_to(order, (trees,) + order.shape).copy()
    node = np.zeros((trees, n), dtype=np.int8)
    alive = np.ones((trees, 1), dtype=bool)
    visited = np.zeros((trees, _INTERNAL), dtype=bool)
    feature = np.zeros((trees, _INTERNAL), dtype=np.intp)
    threshold = np.full((trees, _INTERNAL), np.inf)
    importance = np.zeros((trees, num_features))
    rows = np.arange(trees)[:, None]
    level = _Level(g, node, 1)
    for depth in range(MAX_DEPTH):
        slots = 2 ** depth
        heap = np.arange(slots - 1, 2 * slots - 1)
        visited[:, heap] = _visited(level, alive)
        scores = _Scores(g, xt, idx, node, level, alive)
        feat = np.zeros((trees, slots), dtype=np.intp)
        thresh = np.full((trees, slots), np.inf)
        if depth == 1:
            # the right node's draws come after the left node's children's draws
            feat[:, 0] = scores.choose(rank[rows, _dfs_index(visited, 1)[:, None]])[:, 0]
            thresh[:, 0] = scores.thresholds(feat)[:, 0]
            left_children = _Level(g, _descend(x32, node, feat, thresh), 4)
            visited[:, 3:5] = _visited(left_children, np.repeat(scores.split, 2, axis=1))[:, :2]
        ranks = rank[rows, np.stack([_dfs_index(visited, h) for h in heap], axis=1)]
        feat[:, slots - 1] = scores.choose(ranks)[:, slots - 1]
        if depth != 1:
            feat = scores.choose(ranks)
        thresh = scores.thresholds(feat)
        split = scores.split
        feat = np.where(split, feat, 0)
        feature[:, heap], threshold[:, heap] = feat, thresh
        node = _descend(x32, node, feat, thresh)
        child = _Level(g, node, 2 * slots)
        decrease = (level.count * level.impurity
                    - child.count[:, 0::2] * child.impurity[:, 0::2]
                    - child.count[:, 1::2] * child.impurity[:, 1::2])
        np.add.at(importance, (np.broadcast_to(rows, feat.shape)[split], feat[split]),
                  decrease[split] / n)
        alive = np.repeat(split, 2, axis=1)
        if depth + 1 < MAX_DEPTH:
            key = node.ravel().take(idx + (rows * n)[:, :, None])
            idx = np.take_along_axis(idx, np.argsort(key, axis=2, kind="stable"), axis=2)
        level = child
    return feature, threshold, node.astype(np.intp), importance


def _leaf_values(leaf: np.ndarray, target: np.ndarray, neg_g: np.ndarray, num_classes: int):
    """One Newton step per leaf: mean(-g) [x (K-1)/K] / mean(p (1 - p)); 0 if ~0 denominator."""
    trees = len(leaf)
    key = (np.arange(trees)[:, None] * _LEAVES + leaf).ravel()
    size = trees * _LEAVES
    prob = target - neg_g
    count = np.bincount(key, minlength=size)
    safe = np.maximum(count, 1)
    numerator = np.bincount(key, neg_g.ravel(), minlength=size) / safe
    if num_classes > 2:
        numerator = numerator * ((num_classes - 1) / num_classes)
    denominator = np.bincount(key, (prob * (1 - prob)).ravel(), minlength=size) / safe
    tiny = np.abs(denominator) < 1e-150
    value = np.where(tiny, 0.0, numerator / np.where(tiny, 1.0, denominator))
    return value.reshape(trees, _LEAVES)


def fit(x: np.ndarray, y: np.ndarray, random_state: int = 0) -> BoostedTrees:
    """Fit ``GradientBoostingClassifier(random_state=random_state)`` to ``x`` (n, D), ``y`` (n,).

    ``y`` needs at least two classes; ``x`` is used as float32, as scikit-learn
    does. ``random_state`` only decides between equally good splits.
    """
    rng = np.random.RandomState(random_state)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    classes, y_enc = np.unique(np.asarray(y), return_inverse=True)
    num_classes = len(classes)
    if num_classes < 2:
        raise ValueError("fit: expected at least 2 classes in y, got 1")
    n, num_features = x32.shape
    if num_classes == 2:
        target = y_enc[:, None].astype(np.float64)
    else:
        target = (y_enc[:, None] == np.arange(num_classes)[None, :]).astype(np.float64)
    trees = target.shape[1]
    init = _initial_raw(y_enc, num_classes)
    raw = np.tile(init, (n, 1))
    order = np.argsort(x32.T, axis=1, kind="stable").astype(np.intp)
    features = np.zeros((N_ESTIMATORS, trees, _INTERNAL), dtype=np.intp)
    thresholds = np.zeros((N_ESTIMATORS, trees, _INTERNAL))
    values = np.zeros((N_ESTIMATORS, trees, _LEAVES))
    importances = np.zeros((N_ESTIMATORS, trees, num_features))
    has_split = np.zeros((N_ESTIMATORS, trees), dtype=bool)
    rows = np.arange(trees)[:, None]
    for r in range(N_ESTIMATORS):
        neg_g = np.ascontiguousarray(_negative_gradient(raw, target).T)  # (T, n)
        seeds = np.array([rng.randint(0, _RAND_R_MAX) for _ in range(trees)])
        rank = _visit_ranks(seeds, num_features)
        # a few trees at a time keep the (trees, D, n) work arrays in cache
        parts = [_grow_round(neg_g[c:c + _CHUNK], x32, order, rank[c:c + _CHUNK])
                 for c in range(0, trees, _CHUNK)]
        feature, threshold, leaf, importance = (np.concatenate(a) for a in zip(*parts))
        value = _leaf_values(leaf, target.T, neg_g, num_classes)
        raw += LEARNING_RATE * value[rows, leaf].T
        features[r], thresholds[r], values[r], importances[r] = feature, threshold, value, importance
        has_split[r] = np.isfinite(threshold[:, 0])
    if has_split.any():
        mean = importances[has_split].mean(axis=0)
        feature_importances = mean / mean.sum()
    else:
        feature_importances = np.zeros(num_features)
    return BoostedTrees(classes, init, features, thresholds, values, feature_importances)
