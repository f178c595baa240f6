"""Connectionist temporal classification (faltung's ops; Keras 3's `keras.ops.ctc_loss` and
`keras.ops.ctc_decode` under the same names, arguments and return formats).

numpy in, numpy out. Layouts as Keras: `output` / `inputs` (batch, time, classes) logits,
`target` (batch, max_label_length) integer labels, lengths (batch,). A float64 `output` runs
the float64 kernels (for gradient checks); everything else runs in float32.

faltung adds, keyword-only: `from_log_probs` (the output already holds log-probabilities),
`zero_infinity` (PyTorch's: an impossible alignment costs 0 instead of +inf) and
`ctc_loss_and_grad`, the loss with its gradient in one pass (what training uses).
"""
import numpy as np

from faltung.ops._kernels import as_array, dtype_of, kernel_for

__all__ = ["ctc_loss", "ctc_loss_and_grad", "ctc_decode"]

_INT32 = np.iinfo(np.int32)


def _as_int32(a, what, op, ndim):
    """`a` as C-contiguous int32 of rank ndim. Integer, bool and integral float arrays are
    accepted; a value outside int32's range raises ValueError before any cast could wrap it."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{op}: expected integer `{what}`, received an array of dtype {arr.dtype}")
    if arr.ndim != ndim:
        raise ValueError(f"{op}: expected `{what}` of rank {ndim}, received shape {arr.shape}")
    if arr.dtype == np.int32:
        return np.ascontiguousarray(arr)
    if arr.size:
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise ValueError(f"{op}: `{what}` must hold integers, received non-integer values")
        lo, hi = arr.min(), arr.max()
        if lo < _INT32.min or hi > _INT32.max:
            raise ValueError(f"{op}: `{what}` holds {lo if lo < _INT32.min else hi}, outside the "
                             "int32 range")
    return np.ascontiguousarray(arr, dtype=np.int32)


def _loss_call(target, output, target_length, output_length, mask_index, from_log_probs,
               zero_infinity, need_grad):
    out = np.asarray(output)
    if out.ndim != 3:
        raise ValueError("ctc_loss: expected `output` of shape (batch_size, max_length, "
                         f"num_classes), received shape {out.shape}")
    dtype = dtype_of(out)
    return kernel_for("ctc_loss", dtype)(
        as_array(out, dtype), _as_int32(target, "target", "ctc_loss", 2),
        _as_int32(target_length, "target_length", "ctc_loss", 1),
        _as_int32(output_length, "output_length", "ctc_loss", 1), int(mask_index),
        bool(from_log_probs), bool(zero_infinity), need_grad)


def ctc_loss(target, output, target_length, output_length, mask_index=0, *,
             from_log_probs=False, zero_infinity=False):
    """Per-sample CTC loss -log P(target | output), shape (batch,).

    Args:
        target: (batch, max_label_length) integer labels; entries past a sample's
            `target_length` are ignored.
        output: (batch, max_length, num_classes) logits (not softmax-normalised), or
            log-probabilities with `from_log_probs=True` (faltung-only).
        target_length, output_length: (batch,) the label and logit lengths.
        mask_index: the blank class.
        zero_infinity: (faltung-only) an alignment that cannot exist (a label longer than its
            input allows) costs 0 instead of +inf.
    """
    return _loss_call(target, output, target_length, output_length, mask_index,
                      from_log_probs, zero_infinity, False)[0]


def ctc_loss_and_grad(target, output, target_length, output_length, mask_index=0, *,
                      from_log_probs=False, zero_infinity=False):
    """(loss (batch,), d loss_b / d output (batch, time, classes)) in one pass. The gradient
    is 0 at steps past a sample's `output_length` and for impossible alignments."""
    return _loss_call(target, output, target_length, output_length, mask_index,
                      from_log_probs, zero_infinity, True)


def ctc_decode(inputs, sequence_lengths, strategy="greedy", beam_width=100, top_paths=1,
               merge_repeated=True, mask_index=0):
    """Decodes CTC outputs as Keras does.

    Returns (decoded, scores). greedy: decoded (1, batch, max_length) int32, each row the
    labels of the best path (repeats merged if `merge_repeated`, blanks dropped) then -1;
    scores (batch, 1) = -sum over the steps of the largest input. beam_search (prefix beam
    search over softmax(inputs)): decoded (top_paths, batch, max_length), scores
    (batch, top_paths) the log-probabilities of the decoded label sequences, best first.
    `mask_index=None` means the last class.
    """
    x = np.asarray(inputs)
    if x.ndim != 3:
        raise ValueError("ctc_decode: expected `inputs` of shape (batch_size, max_length, "
                         f"num_classes), received shape {x.shape}")
    dtype = dtype_of(x)
    x = as_array(x, dtype)
    lengths = _as_int32(sequence_lengths, "sequence_lengths", "ctc_decode", 1)
    blank = x.shape[2] - 1 if mask_index is None else int(mask_index)
    if strategy == "greedy":
        decoded, score = kernel_for("ctc_greedy_decode", dtype)(x, lengths, blank,
                                                                 bool(merge_repeated))
        return decoded[None], score[:, None]
    if strategy == "beam_search":
        return kernel_for("ctc_beam_search_decode", dtype)(x, lengths, blank, int(beam_width),
                                                            int(top_paths))
    raise ValueError(f"Invalid strategy {strategy}. Supported values are 'greedy' and "
                     "'beam_search'.")
