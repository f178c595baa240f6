"""The losses of a device-resident model (faltung.models.resident) over the backend's `loss`
entry point (cpp/cuda/bind_resident_losses.hpp): one `DeviceLoss` per output that has a loss,
computing what faltung.losses computes on the CPU, with the same formulas (cpp/cuda/losses.cuh).

Supported, anything else raising NotImplementedError that names it: SparseCategoricalCrossentropy
(no ignore_class) and CategoricalCrossentropy (label_smoothing; axis -1), both from_logits=True
or False; BinaryCrossentropy (from_logits both, label_smoothing; axis -1); MeanSquaredError,
MeanAbsoluteError and Huber; reduction "sum_over_batch_size" only, on outputs of rank >= 2;
sample weights (and class weights, which the Trainer turns into sample weights) per sample or
per position of a sequence output, uploaded with the batch. A crossentropy with
from_logits=False on a softmax output reads the softmax's input instead (the fused softmax +
crossentropy kernel; it equals the CPU's but where a probability falls below the CPU's clip at
1e-7), unless the softmax's output also feeds another layer.
"""
from types import SimpleNamespace

import numpy as np

from faltung import losses as L

SUPPORTED_LOSSES = ("SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy, "
                    "MeanSquaredError, MeanAbsoluteError, Huber (reduction 'sum_over_batch_size')")


def _unwrap(loss):
    """The loss class behind a LossFunctionWrapper of one of faltung.losses' functions."""
    if isinstance(loss, L.LossFunctionWrapper) and loss._inner is not None:
        return loss._inner
    return loss


def _like(shape):
    """What faltung.losses' shape checks read of an array: its ndim and shape."""
    return SimpleNamespace(ndim=len(shape), shape=tuple(shape))


class DeviceLoss:
    """One output's loss: `fused` when it reads the logits under a softmax output."""

    def __init__(self, loss, out_rank, fused, where):
        self.loss, self.name = loss, loss.name
        inner = _unwrap(loss)
        kind = type(inner)
        unsupported = NotImplementedError(
            f"{where}: the loss {type(loss).__name__} ('{loss.name}', reduction {loss.reduction!r}) is not "
            f"supported on the device yet; supported: {SUPPORTED_LOSSES}")
        if loss.reduction != "sum_over_batch_size":
            raise unsupported
        if out_rank < 2:
            raise NotImplementedError(f"{where}: the loss '{loss.name}' needs an output of rank >= 2 on the "
                                      f"device, the output has rank {out_rank}")
        if getattr(inner, "axis", -1) not in (-1, out_rank - 1):
            raise NotImplementedError(f"{where}: the loss '{loss.name}' with axis={inner.axis} is not supported "
                                      "on the device yet (only the last axis)")
        self.sparse, self.smoothing, self.delta, self.fused = False, 0.0, 1.0, False
        if kind is L.SparseCategoricalCrossentropy:
            if inner.ignore_class is not None:
                raise NotImplementedError(f"{where}: SparseCategoricalCrossentropy(ignore_class=...) is not "
                                          "supported on the device yet")
            self.sparse = True
            self.kind = "softmax_xent" if inner.from_logits or fused else "probs_xent"
            self.fused = fused and not inner.from_logits
        elif kind is L.CategoricalCrossentropy:
            self.smoothing = inner.label_smoothing
            self.kind = "softmax_xent" if inner.from_logits or fused else "probs_xent"
            self.fused = fused and not inner.from_logits
        elif kind is L.BinaryCrossentropy:
            self.smoothing = inner.label_smoothing
            self.kind = "bce_logits" if inner.from_logits else "bce_probs"
        elif kind is L.MeanSquaredError or kind is L.MeanAbsoluteError:
            self.kind = "mse" if kind is L.MeanSquaredError else "mae"
        elif kind is L.Huber:
            self.kind, self.delta = "huber", inner.delta
        else:
            raise unsupported
        self.inner = inner

    def _targets(self, y, pred_shape, res_dtype):
        """(target, labels) as the CPU loss reads y (its checks and messages)."""
        name = self.name
        if self.sparse:
            t = np.asarray(y)
            lead = pred_shape[:-1]
            if t.shape == lead + (1,):
                t = t[..., 0]
            if t.shape != lead:
                raise L._shape_error(name, t, _like(pred_shape), " up until the last dimension")
            if t.dtype.kind == "f" and (not np.all(np.isfinite(t)) or np.any(t != np.round(t))):
                raise ValueError(f"{name}: labels must be integers, received non-integer values in target of "
                                 f"shape {t.shape}")
            bad = np.flatnonzero((t < 0) | (t >= pred_shape[-1]))
            if bad.size:  # checked here: the labels go to the device as a DeviceArray
                i = int(bad[0])
                raise ValueError(f"loss({self.kind}): label {int(t.flat[i])} at index {i} is out of range "
                                 f"[0, {pred_shape[-1]})")
            return None, np.ascontiguousarray(t, dtype=np.int32)
        t = np.asarray(y)
        if self.kind in ("softmax_xent", "probs_xent"):
            if t.shape != pred_shape:
                raise L._shape_error(name, t, _like(pred_shape))
        else:
            t = L._same_rank(name, t, _like(pred_shape))
        return np.ascontiguousarray(t, dtype=res_dtype), None

    def __call__(self, res, pred, targets, sample_weight, loss_weight, need_grad, stats):
        """(the rows n and the slot of `stats` (resident_metrics.BatchStats) whose first sum over n
        is the output's loss value as the CPU logs it, dL/dpred times loss_weight or None).
        `targets` (resident_metrics.BatchTargets) uploads the output's targets, once per batch."""
        shape = tuple(pred.shape)
        target, labels = self._targets(targets.y, shape, res.dtype)
        rows = shape[:-1]
        n = int(np.prod(rows))
        w = None
        if sample_weight is not None:
            w = L._match_weight(self.name, np.asarray(sample_weight, dtype=res.dtype), _like(rows))
            w = targets.upload(w.reshape(-1))
        k = shape[-1]
        tadd = self.smoothing / (2.0 if self.kind.startswith("bce") else k)
        values, grad = res.r.loss(self.kind, pred, target=None if target is None else targets.upload(target),
                                  labels=None if labels is None else targets.upload(labels),
                                  row_scale=None if w is None else w.reshape(rows),
                                  scale=loss_weight / max(n, 1), tmul=1.0 - self.smoothing, tadd=tadd,
                                  delta=self.delta, need_grad=need_grad)
        return n, stats.add("value", values, weight=w), grad
