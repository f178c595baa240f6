"""Plain CTC references (float64 numpy, loops written as the definitions read); never imports
faltung. Probabilities, not logs: fine for the short sequences the tests use."""
import itertools

import numpy as np


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def collapse(path, blank):
    """B(path): merge repeats, then drop blanks."""
    out, prev = [], None
    for k in path:
        if k != prev and k != blank:
            out.append(int(k))
        prev = k
    return out


def brute_force_prob(y, label, blank):
    """P(label | y) for y (T, C) probabilities: the sum over all C**T paths."""
    T, C = y.shape
    total = 0.0
    for path in itertools.product(range(C), repeat=T):
        if collapse(path, blank) == list(label):
            total += np.prod([y[t, k] for t, k in enumerate(path)])
    return total


def extended(label, blank):
    ext = [blank]
    for k in label:
        ext += [int(k), blank]
    return ext


def alpha_beta(y, label, blank):
    """alpha (T, L), beta (T, L) as Graves defines them (both include y_t(l'_s)), so that
    sum_s alpha[t, s] * beta[t, s] / y[t, l'_s] = P(label | y) at every t."""
    T = y.shape[0]
    ext = extended(label, blank)
    L = len(ext)
    alpha = np.zeros((T, L))
    beta = np.zeros((T, L))
    alpha[0, 0] = y[0, ext[0]]
    if L > 1:
        alpha[0, 1] = y[0, ext[1]]
    for t in range(1, T):
        for s in range(L):
            a = alpha[t - 1, s] + (alpha[t - 1, s - 1] if s >= 1 else 0.0)
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                a += alpha[t - 1, s - 2]
            alpha[t, s] = a * y[t, ext[s]]
    beta[T - 1, L - 1] = y[T - 1, ext[L - 1]]
    if L > 1:
        beta[T - 1, L - 2] = y[T - 1, ext[L - 2]]
    for t in range(T - 2, -1, -1):
        for s in range(L):
            b = beta[t + 1, s] + (beta[t + 1, s + 1] if s + 1 < L else 0.0)
            if s + 2 < L and ext[s + 2] != blank and ext[s + 2] != ext[s]:
                b += beta[t + 1, s + 2]
            beta[t, s] = b * y[t, ext[s]]
    return alpha, beta


def prob(y, label, blank):
    """P(label | y) by the alpha recursion (y (T, C) probabilities, T >= 1)."""
    alpha, _ = alpha_beta(y, label, blank)
    return alpha[-1, -1] + (alpha[-1, -2] if alpha.shape[1] > 1 else 0.0)


def log_prob(y, label, blank):
    """log P(label | y) by the alpha recursion rescaled at every step (Graves's scaling), so
    that long sequences do not underflow; -inf when no alignment exists."""
    ext = extended(label, blank)
    L = len(ext)
    a = np.zeros(L)
    a[0] = y[0, ext[0]]
    if L > 1:
        a[1] = y[0, ext[1]]
    log_scale = 0.0
    for t in range(1, y.shape[0]):
        prev = a
        a = np.zeros(L)
        for s in range(L):
            v = prev[s] + (prev[s - 1] if s >= 1 else 0.0)
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                v += prev[s - 2]
            a[s] = v * y[t, ext[s]]
        total = a.sum()
        if total == 0:
            return -np.inf
        a /= total
        log_scale += np.log(total)
    p = a[-1] + (a[-2] if L > 1 else 0.0)
    return np.log(p) + log_scale if p > 0 else -np.inf


def ctc_loss(logits, labels, label_lengths, input_lengths, blank):
    """Per-sample -log P for batch-major logits (B, T, C), as Keras's ctc_loss."""
    out = np.zeros(len(logits))
    for b in range(len(logits)):
        Tb, Sb = int(input_lengths[b]), int(label_lengths[b])
        label = list(labels[b, :Sb])
        if Tb == 0:
            out[b] = 0.0 if Sb == 0 else np.inf
            continue
        out[b] = -log_prob(softmax(logits[b, :Tb].astype(np.float64)), label, blank)
    return out


def best_path_search(y, blank, length):
    """The most probable label sequence by exhaustive search over all paths of `length`
    steps (sum over the paths of each label sequence): what an unpruned beam search finds.
    Returns (labels, log P) of the best, and the dict of every label sequence's probability."""
    C = y.shape[1]
    probs = {}
    for path in itertools.product(range(C), repeat=length):
        key = tuple(collapse(path, blank))
        probs[key] = probs.get(key, 0.0) + np.prod([y[t, k] for t, k in enumerate(path)])
    best = max(probs, key=probs.get)
    return list(best), np.log(probs[best]), probs
