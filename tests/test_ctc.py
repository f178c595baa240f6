"""CTC loss, gradient and decoding against plain references: brute force over every path,
the alpha/beta recursions in float64, central differences, exhaustive search for decoding,
and the seeds' worked example."""
import itertools

import numpy as np
import pytest

import faltung
from faltung import ops
from reference import ctc as ref
from reference.gradcheck import numeric_grad
from test_dispatch_levels import level  # noqa: F401  (the fixture: each CPU level in turn)

rng = np.random.default_rng(7)


def random_case(B, T, C, S, blank=0, rng=rng):
    """Logits (B,T,C) float64, labels avoiding `blank`, random lengths (some uneven)."""
    x = rng.normal(size=(B, T, C)) * 2
    classes = [k for k in range(C) if k != blank]
    labels = rng.choice(classes, size=(B, S))
    label_len = rng.integers(0, S + 1, size=B)
    input_len = rng.integers(1, T + 1, size=B)
    return x, labels, label_len, input_len


# ---- the loss against brute force ------------------------------------------------------

@pytest.mark.parametrize("blank", [0, 3])
def test_loss_equals_brute_force_over_all_paths(blank):
    r = np.random.default_rng(1)
    for _ in range(6):
        x, labels, ll, il = random_case(3, 5, 4, 3, blank, r)
        got = ops.ctc_loss(labels, x, ll, il, mask_index=blank)
        for b in range(3):
            p = ref.brute_force_prob(ref.softmax(x[b, :il[b]]), labels[b, :ll[b]], blank)
            want = -np.log(p) if p > 0 else np.inf
            np.testing.assert_allclose(got[b], want, rtol=1e-10)


@pytest.mark.parametrize("label", [[1, 1, 2], [2, 2], [1, 2, 1], [3], []])
def test_repeated_and_empty_labels_equal_brute_force(label):
    x = np.random.default_rng(2).normal(size=(1, 5, 4))
    S = max(len(label), 1)
    target = np.zeros((1, S), np.int32)
    target[0, :len(label)] = label
    got = ops.ctc_loss(target, x, [len(label)], [5])[0]
    want = -np.log(ref.brute_force_prob(ref.softmax(x[0]), label, 0))
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_empty_label_is_the_all_blank_path():
    x = np.random.default_rng(3).normal(size=(2, 4, 3))
    got = ops.ctc_loss(np.zeros((2, 2), np.int32), x, [0, 0], [4, 0])
    np.testing.assert_allclose(got[0], -np.log(ref.softmax(x[0])[:, 0]).sum(), rtol=1e-12)
    assert got[1] == 0.0  # no steps, no labels: P = 1


def test_float32_matches_float64_reference_on_a_larger_batch():
    x, labels, ll, il = random_case(8, 60, 20, 12)
    il[0] = 60
    want = ref.ctc_loss(x, labels, ll, il, 0)
    got = ops.ctc_loss(labels, x.astype(np.float32), ll, il)
    assert got.dtype == np.float32
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-5, atol=2e-4)


def test_batch_one_long_sequence_against_reference():
    x, labels, _, _ = random_case(1, 400, 6, 30)
    for dt, tol in ((np.float64, 1e-10), (np.float32, 1e-4)):
        got = ops.ctc_loss(labels, x.astype(dt), [30], [400])
        np.testing.assert_allclose(got, ref.ctc_loss(x, labels, [30], [400], 0), rtol=tol)


# ---- gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("blank", [0, 4])
def test_logit_gradient_matches_finite_differences(blank):
    x, labels, ll, il = random_case(4, 6, 5, 3, blank, np.random.default_rng(4))
    ll[:] = [3, 2, 0, 1]
    il[:] = [6, 4, 6, 1]
    labels[0] = [k for k in range(5) if k != blank][:1] * 2 + [labels[0, 2]]  # a repeat
    r = np.random.default_rng(5).uniform(0.5, 1.5, size=4)
    loss, grad = ops.ctc_loss_and_grad(labels, x, ll, il, mask_index=blank)
    assert np.all(np.isfinite(loss))
    want = numeric_grad(lambda z: ops.ctc_loss(labels, z, ll, il, mask_index=blank), x,
                        np.ones(4))
    np.testing.assert_allclose(grad, want, atol=1e-7)
    # steps past a sample's length get no gradient
    assert np.all(grad[1, 4:] == 0) and np.all(grad[3, 1:] == 0)
    # the gradient is per sample: weighting the losses weights the gradient rows
    want_r = numeric_grad(lambda z: ops.ctc_loss(labels, z, ll, il, mask_index=blank), x, r)
    np.testing.assert_allclose(grad * r[:, None, None], want_r, atol=1e-7)


def test_log_prob_gradient_matches_finite_differences():
    x, labels, ll, il = random_case(3, 5, 4, 2, rng=np.random.default_rng(6))
    ll[:] = 2
    il[:] = [5, 4, 3]
    lp = np.log(ref.softmax(x))
    loss, grad = ops.ctc_loss_and_grad(labels, lp, ll, il, from_log_probs=True)
    np.testing.assert_allclose(loss, ref.ctc_loss(x, labels, ll, il, 0), rtol=1e-12)
    want = numeric_grad(lambda z: ops.ctc_loss(labels, z, ll, il, from_log_probs=True), lp,
                        np.ones(3))
    np.testing.assert_allclose(grad, want, atol=1e-7)


def test_tight_alignments_across_slot_blocks():
    """Labels nearly as long as their inputs: the kernels compute only the band of slots a path
    can occupy (in blocks of 16), so most of each row lies outside it. Loss against the float64
    reference, the gradient against finite differences, float32 against float64."""
    r = np.random.default_rng(11)
    T, C, S = 22, 4, 20
    x = r.normal(size=(3, T, C)) * 2
    labels = np.stack([np.arange(S) % (C - 1) + 1] * 3)  # no repeats: S steps suffice
    ll = np.array([20, 17, 9])
    il = np.array([20, 22, 21])
    loss, grad = ops.ctc_loss_and_grad(labels, x, ll, il)
    np.testing.assert_allclose(loss, ref.ctc_loss(x, labels, ll, il, 0), rtol=1e-10)
    want = numeric_grad(lambda z: ops.ctc_loss(labels, z, ll, il), x, np.ones(3))
    np.testing.assert_allclose(grad, want, atol=1e-7)
    loss32, grad32 = ops.ctc_loss_and_grad(labels, x.astype(np.float32), ll, il)
    np.testing.assert_allclose(loss32, loss, rtol=1e-5)
    np.testing.assert_allclose(grad32, grad, atol=1e-5)
    # one step fewer than the label needs: infeasible, +inf and no gradient
    loss, grad = ops.ctc_loss_and_grad(labels[:1], x[:1], [20], [19])
    assert loss[0] == np.inf and not grad.any()


def test_float32_gradient_matches_float64():
    x, labels, ll, il = random_case(6, 40, 12, 8)
    _, g64 = ops.ctc_loss_and_grad(labels, x, ll, il)
    _, g32 = ops.ctc_loss_and_grad(labels, x.astype(np.float32), ll, il)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, atol=1e-4)  # float32 log-space sums of ~100


def test_one_and_two_threads_give_identical_results():
    x, labels, ll, il = random_case(5, 80, 30, 10)
    x = x.astype(np.float32)
    old = faltung.get_num_threads()
    try:
        faltung.set_num_threads(1)
        one = ops.ctc_loss_and_grad(labels, x, ll, il)
        faltung.set_num_threads(2)
        two = ops.ctc_loss_and_grad(labels, x, ll, il)
        single = ops.ctc_loss_and_grad(labels[:1], x[:1], ll[:1], il[:1])  # batch 1: alpha || gamma
    finally:
        faltung.set_num_threads(old)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(single[1][0], one[1][0])


def test_row_blocks_and_sample_groups_with_uneven_lengths():
    """The row pass goes in blocks of rows (64 rows, fewer when a row is long: 21 rows of 3000
    floats, 10 of 3000 doubles) and the recursions run up to 4 samples in lock-step: lengths
    that end inside a block, an infeasible sample and an empty input among them, in the
    grouped schedule (batch 9) and the split one (batch 1), loss and gradient against the
    float64 reference, float32 against float64, one thread against two."""
    r = np.random.default_rng(11)
    x, labels, ll, il = random_case(9, 150, 3000, 6, rng=r)
    il[:] = [150, 129, 64, 65, 1, 0, 100, 3, 140]
    ll[:] = [6, 5, 6, 0, 1, 0, 6, 6, 3]  # sample 7: 6 labels in 3 steps cannot align
    want = ref.ctc_loss(x, labels, ll, il, 0)
    assert np.isinf(want[7]) and np.isfinite(want[:7]).all()
    loss, grad = ops.ctc_loss_and_grad(labels, x, ll, il)
    np.testing.assert_allclose(loss, want, rtol=1e-10)
    assert not grad[7].any() and not grad[5].any() and not grad[1, 129:].any()
    np.testing.assert_allclose(grad.sum(-1)[0], 0, atol=1e-12)  # softmax minus occupancy
    old = faltung.get_num_threads()
    try:
        for nt in (1, 2):
            faltung.set_num_threads(nt)
            l32, g32 = ops.ctc_loss_and_grad(labels, x.astype(np.float32), ll, il)
            np.testing.assert_allclose(l32, loss, rtol=2e-5)
            # log alpha + log gamma reach -1200 here (3000 classes, 150 steps): float32's
            # rounding there (1e-4) moves the occupancies by up to 6e-4, as before the blocks
            np.testing.assert_allclose(g32, grad, atol=1e-3)
            one_l, one_g = ops.ctc_loss_and_grad(labels[1:2], x[1:2], ll[1:2], il[1:2])
            np.testing.assert_allclose(one_l, loss[1:2], rtol=1e-12)
            np.testing.assert_allclose(one_g, grad[1:2], atol=1e-14)
    finally:
        faltung.set_num_threads(old)


# ---- impossible alignments --------------------------------------------------------------

def test_infeasible_alignment_gives_inf_loss_and_zero_gradient():
    x = np.random.default_rng(8).normal(size=(3, 4, 3)).astype(np.float32)
    # "aa" needs 3 steps (a blank between), "ab" 2; lengths 2, 2, 3
    target = np.array([[1, 1], [1, 2], [1, 1]])
    loss, grad = ops.ctc_loss_and_grad(target, x, [2, 2, 2], [2, 2, 3])
    assert loss[0] == np.inf and np.isfinite(loss[1]) and np.isfinite(loss[2])
    assert not np.isnan(grad).any()
    assert np.all(grad[0] == 0) and np.any(grad[1] != 0)
    loss0, grad0 = ops.ctc_loss_and_grad(target, x, [2, 2, 2], [2, 2, 3], zero_infinity=True)
    np.testing.assert_array_equal(loss0, [0.0, loss[1], loss[2]])
    np.testing.assert_array_equal(grad0, grad)
    # a label but no steps
    assert ops.ctc_loss(target[:1], x[:1], [1], [0])[0] == np.inf


def test_nan_input_propagates():
    x = np.random.default_rng(9).normal(size=(2, 4, 3)).astype(np.float32)
    x[0, 1, 2] = np.nan
    loss, grad = ops.ctc_loss_and_grad(np.array([[1], [2]]), x, [1, 1], [4, 4])
    assert np.isnan(loss[0]) and np.isfinite(loss[1])
    assert np.isnan(grad[0]).any() and np.isfinite(grad[1]).all()


def test_nan_reaching_the_end_only_through_a_slot_change_propagates():
    """A NaN log-probability of the first label at step 0 (from_log_probs: only that slot's
    column) reaches the final slots only through transitions from an earlier slot, never
    through staying in one: the log-sum-exp of three must carry a NaN in any argument."""
    x = np.log(np.full((1, 4, 3), 1 / 3))
    x[0, 0, 1] = np.nan
    for dt in (np.float32, np.float64):
        loss, grad = ops.ctc_loss_and_grad([[1, 2]], x.astype(dt), [2], [4], from_log_probs=True)
        assert np.isnan(loss[0]) and np.isnan(grad).any(), dt


# ---- the seeds' worked example ----------------------------------------------------------

# y_t(k) for t = 0..8 (columns) and k = blank, a, b, c, d, e, f (rows), as printed.
SEED_PROBS = np.array([
    [0.9, 0.4, 0.1, 0.8, 0.3, 0.2, 0.9, 0.3, 0.01],
    [0.09, 0.5, 0.8, 0.15, 0.1, 0.1, 0, 0, 0],
    [0, 0, 0, 0, 0, 0.01, 0, 0.1, 0],
    [0, 0, 0, 0, 0, 0.09, 0, 0, 0],
    [0, 0.09, 0.1, 0.05, 0, 0, 0, 0, 0],
    [0.01, 0, 0, 0, 0, 0.2, 0, 0, 0.99],
    [0, 0.01, 0, 0, 0.6, 0.4, 0.1, 0.6, 0],
]).T
AFFE = [1, 6, 6, 5]  # a f f e


def test_seeds_affe_example():
    y = SEED_PROBS
    np.testing.assert_allclose(y.sum(1), 1.0)
    # P(l|x) by brute force over the paths of non-zero probability
    support = [np.flatnonzero(y[t]) for t in range(9)]
    p_brute = sum(np.prod([y[t, k] for t, k in enumerate(path)])
                  for path in itertools.product(*support) if ref.collapse(path, 0) == AFFE)
    with np.errstate(divide="ignore"):
        lp = np.log(y)[None]
    loss, grad = ops.ctc_loss_and_grad(np.array([AFFE]), lp, [4], [9], from_log_probs=True)
    np.testing.assert_allclose(np.exp(-loss[0]), p_brute, rtol=1e-12)
    # sum_u alpha(u,t) beta(u,t) / y_t(l(u)) = P(l|x) at every t: the reference's alpha/beta,
    # and the kernel's occupancies (minus its log-probability gradient) summing to 1
    alpha, beta = ref.alpha_beta(y, AFFE, 0)
    ext = ref.extended(AFFE, 0)
    for t in range(9):
        nz = y[t, ext] > 0
        np.testing.assert_allclose((alpha[t, nz] * beta[t, nz] / y[t, ext][nz]).sum(), p_brute,
                                   rtol=1e-12)
    np.testing.assert_allclose(-grad[0].sum(1), np.ones(9), rtol=1e-12)
    # the alpha cells printed in the seed (rows -, a, - of the extended label, t = 0..4);
    # the printed alpha_1(f) = 0.008 disagrees with the probabilities beside it: alpha_0(a)
    # y_1(f) = 0.09 * 0.01 = 0.0009, which the recursion gives
    printed = {(0, 0): 0.9, (1, 0): 0.36, (2, 0): 0.036, (3, 0): 0.029, (4, 0): 0.009,
               (0, 1): 0.09, (1, 1): 0.495, (2, 1): 0.684, (3, 1): 0.108, (4, 1): 0.014,
               (1, 2): 0.036, (2, 2): 0.053, (3, 2): 0.590, (4, 2): 0.209, (5, 2): 0.045,
               (4, 3): 0.419, (5, 3): 0.257, (6, 3): 0.030}
    for (t, s), v in printed.items():
        assert abs(alpha[t, s] - v) < 6e-4, (t, s, alpha[t, s], v)
    np.testing.assert_allclose(alpha[1, 3], 0.0009)


# ---- decoding ---------------------------------------------------------------------------

def one_hot_logits(paths, C, hi=5.0):
    x = np.zeros((len(paths), len(paths[0]), C), np.float32)
    for b, p in enumerate(paths):
        x[b, np.arange(len(p)), p] = hi
    return x


def test_greedy_merges_repeats_drops_blanks_and_honours_lengths():
    x = one_hot_logits([[1, 1, 0, 1, 2, 2, 0], [2, 0, 0, 2, 2, 1, 1]], 3)
    decoded, scores = ops.ctc_decode(x, [7, 4])
    assert decoded.shape == (1, 2, 7) and decoded.dtype == np.int32 and scores.shape == (2, 1)
    np.testing.assert_array_equal(decoded[0], [[1, 1, 2, -1, -1, -1, -1],
                                               [2, 2, -1, -1, -1, -1, -1]])
    np.testing.assert_allclose(scores[:, 0], [-35.0, -20.0])
    decoded, _ = ops.ctc_decode(x, [7, 7], merge_repeated=False)
    np.testing.assert_array_equal(decoded[0], [[1, 1, 1, 2, 2, -1, -1], [2, 2, 2, 1, 1, -1, -1]])
    # blank at the last index (mask_index=None means the last class, as Keras)
    decoded, _ = ops.ctc_decode(x, [7, 7], mask_index=None)
    np.testing.assert_array_equal(decoded[0], [[1, 0, 1, 0, -1, -1, -1], [0, 1, -1, -1, -1, -1, -1]])


def test_beam_search_equals_exhaustive_search():
    r = np.random.default_rng(10)
    for trial in range(8):
        T, C = 4, 3 + trial % 2
        x = r.normal(size=(2, T, C)) * 1.5
        decoded, logp = ops.ctc_decode(x, [T, T - 1], strategy="beam_search", beam_width=200,
                                       top_paths=3)
        assert decoded.shape == (3, 2, T) and logp.shape == (2, 3)
        for b, length in enumerate([T, T - 1]):
            _, _, probs = ref.best_path_search(ref.softmax(x[b]), 0, length)
            ranked = sorted(probs.items(), key=lambda kv: -kv[1])[:3]
            for k, (labels, p) in enumerate(ranked):
                got = [v for v in decoded[k, b] if v >= 0]
                np.testing.assert_allclose(logp[b, k], np.log(p), rtol=1e-6)
                if k == 0 or not np.isclose(p, ranked[k - 1][1]):
                    assert got == list(labels), (trial, b, k)


def test_beam_search_blank_last_and_narrow_beam():
    x = np.random.default_rng(11).normal(size=(3, 6, 5)).astype(np.float32)
    wide, lp_wide = ops.ctc_decode(x, [6, 6, 2], strategy="beam_search", beam_width=2000,
                                   mask_index=4)  # wider than the number of prefixes: exact
    narrow, lp_narrow = ops.ctc_decode(x, [6, 6, 2], strategy="beam_search", beam_width=1,
                                       mask_index=4)
    assert not np.isin(wide, [4]).any()
    for b in range(3):
        _, best, probs = ref.best_path_search(ref.softmax(x[b].astype(np.float64)), 4, [6, 6, 2][b])
        np.testing.assert_allclose(lp_wide[b, 0], best, rtol=1e-5)
        assert lp_narrow[b, 0] <= lp_wide[b, 0] + 1e-6
        # a width-1 beam counts only the paths it kept: at most the true probability
        key = tuple(v for v in narrow[0, b] if v >= 0)
        assert lp_narrow[b, 0] <= np.log(probs[key]) + 1e-6


def test_beam_search_with_fewer_prefixes_than_top_paths():
    x = np.zeros((1, 1, 2), np.float32)  # one step, classes {blank, a}: two prefixes
    decoded, logp = ops.ctc_decode(x, [1], strategy="beam_search", top_paths=3, beam_width=5)
    np.testing.assert_allclose(logp[0, :2], np.log(0.5), rtol=1e-6)
    assert logp[0, 2] == -np.inf and np.all(decoded[2] == -1)
    decoded, logp = ops.ctc_decode(x, [0], strategy="beam_search")  # no steps: the empty path
    assert logp[0, 0] == 0.0 and np.all(decoded == -1)


# ---- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda x: ops.ctc_loss([[1, 2]], x, [2], [6]), "output_length"),
    (lambda x: ops.ctc_loss([[1, 2]], x, [3], [5]), "target_length"),
    (lambda x: ops.ctc_loss([[1, 0]], x, [2], [5]), "blank"),
    (lambda x: ops.ctc_loss([[1, 7]], x, [2], [5]), r"target\[0, 1\] = 7"),
    (lambda x: ops.ctc_loss([[1, 2]], x, [2], [-1]), "output_length"),
    (lambda x: ops.ctc_loss([1, 2], x, [2], [5]), "rank 2"),
    (lambda x: ops.ctc_loss([[1, 2]], x[0], [2], [5]), "shape"),
    (lambda x: ops.ctc_loss([[1, 2], [1, 2]], x, [2], [5]), "target"),
    (lambda x: ops.ctc_loss([[1, 2]], x, [2, 2], [5]), "target_length"),
    (lambda x: ops.ctc_loss([[1.5, 2]], x, [2], [5]), "integers"),
    (lambda x: ops.ctc_loss([[1, 2**40]], x, [2], [5]), "int32"),
    (lambda x: ops.ctc_loss([[1, 2]], x, [2], [5], mask_index=4), "blank"),
    (lambda x: ops.ctc_loss(np.ones((1, 7), np.int32), x, [6], [5]), "time axis"),
    (lambda x: ops.ctc_decode(x, [6]), "sequence_lengths"),
    (lambda x: ops.ctc_decode(x, [5], strategy="beam"), "Invalid strategy"),
    (lambda x: ops.ctc_decode(x, [5], strategy="beam_search", beam_width=0), "beam_width"),
    (lambda x: ops.ctc_decode(x, [5], strategy="beam_search", top_paths=0), "top_paths"),
    (lambda x: ops.ctc_decode(x, [5], strategy="beam_search", beam_width=2, top_paths=3),
     "top_paths"),
    (lambda x: ops.ctc_decode(x, [5], mask_index=-1), "mask_index"),
])
def test_bad_arguments_raise_value_error(call, match):
    x = np.zeros((1, 5, 4), np.float32)
    with pytest.raises(ValueError, match=match):
        call(x)


def test_wrong_dtype_raises_type_error():
    x = np.zeros((1, 5, 4), np.float32)
    with pytest.raises(TypeError, match="integer `target`"):
        ops.ctc_loss(np.array([["a", "b"]]), x, [2], [5])


# ---- the logits' row pass at every CPU level ---------------------------------------------

@pytest.mark.parametrize("C", [3, 4, 7, 8, 9, 15, 16, 17, 21, 28, 33])
def test_logits_rows_of_every_width_at_every_level(level, C):  # noqa: F811
    """The log-softmax of each row runs over whole vectors, the last one overlapping the one
    before when C is no multiple of the width (4, 8 or 16 floats; 2, 4 or 8 doubles), and
    scalar below one vector: loss against the float64 reference and gradient against finite
    differences (float64), float32 against float64, at each level."""
    r = np.random.default_rng(100 + C)
    x, labels, ll, il = random_case(3, 7, C, 3, rng=r)
    il[:] = 7  # feasible (3 labels need at most 6 steps): finite losses to differentiate
    x *= 2.5
    x[0, 1, C // 2] = 40.0  # a large logit: the row's max must be found in any lane
    loss, grad = ops.ctc_loss_and_grad(labels, x, ll, il)
    np.testing.assert_allclose(loss, ref.ctc_loss(x, labels, ll, il, 0), rtol=1e-10)
    want = numeric_grad(lambda z: ops.ctc_loss(labels, z, ll, il), x, np.ones(3))
    np.testing.assert_allclose(grad, want, atol=1e-6)
    loss32, grad32 = ops.ctc_loss_and_grad(labels, x.astype(np.float32), ll, il)
    np.testing.assert_allclose(loss32, loss, rtol=2e-5)
    np.testing.assert_allclose(grad32, grad, atol=2e-5)
