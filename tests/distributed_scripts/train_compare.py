"""Run as `mpiexec -n P python -m mpi4py train_compare.py OUTDIR` (tests/test_distribution.py).

For an MLP, a small CNN, a CNN with BatchNormalization(synchronized=True) and an LSTM
model: fit with DataParallel over the P processes (each rank starts from different
weights, so rank 0's must be broadcast; 33 samples in global batches of 8, so the last
batch of each epoch has 1 row and the other ranks none; sample weights and validation
data), then, on rank 0 alone, fit the same model from rank 0's initial weights on the
same global batches in one process. Rank 0 prints one line per model:
    RESULT {"model": ..., "weights": max |distributed - one process| over all steps,
            "ranks": max |rank r - rank 0| over all steps and ranks, ...}
Also evaluate and predict with DataParallel against one process on the same weights,
and the files each rank wrote through CSVLogger, ModelCheckpoint and model.save.
"""
import json
import os
import sys

import numpy as np
from mpi4py import MPI

import faltung as keras
from faltung import layers
from faltung.distribution import replica

replica.BUCKET_BYTES = 256  # many gradient buckets, each reduced as backward reaches it

COMM = MPI.COMM_WORLD
RANK = COMM.Get_rank()
OUT = sys.argv[1]


def build(kind):
    if kind == "mlp":
        model = keras.Sequential([layers.Input((10,)), layers.Dense(16, activation="relu"),
                                  layers.Dense(3, activation="softmax")])
    elif kind == "cnn":
        model = keras.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, 3, activation="relu"),
                                  layers.MaxPooling2D(2), layers.Flatten(),
                                  layers.Dense(3, activation="softmax")])
    elif kind == "cnn_bn":  # batch statistics of the global batch on every rank
        model = keras.Sequential([layers.Input((8, 8, 2)), layers.Conv2D(4, 3, use_bias=False),
                                  layers.BatchNormalization(synchronized=True, momentum=0.5),
                                  layers.ReLU(), layers.Flatten(),
                                  layers.Dense(3, activation="softmax")])
    else:
        model = keras.Sequential([layers.Input((5, 3)), layers.LSTM(6), layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(kind, n=33):
    rng = np.random.default_rng(7)
    shape = {"mlp": (10,), "cnn": (8, 8, 2), "cnn_bn": (8, 8, 2), "lstm": (5, 3)}[kind]
    return rng.normal(size=(n,) + shape).astype("float32"), rng.integers(0, 3, n)


SAMPLE_WEIGHT = np.random.default_rng(8).uniform(0.5, 1.5, 33).astype("float32")


def flat(model):
    return np.concatenate([w.ravel() for w in model.get_weights()])


def rank_spread(vec):
    """max over ranks of |vec on rank r - vec on rank 0|."""
    ref = vec.copy()
    COMM.Bcast(ref, root=0)
    local = np.array([np.max(np.abs(vec - ref))], np.float64)
    out = np.zeros(1)
    COMM.Allreduce(local, out, op=MPI.MAX)
    return float(out[0])


def fit_recording(model, x, y, callbacks=(), distributed=True):
    steps, spread = [], [0.0]

    def after_step(batch, logs):
        steps.append(flat(model))
        if distributed:
            spread[0] = max(spread[0], rank_spread(steps[-1]))

    np.random.seed(0)  # the shuffle: rank 0's order is used on every rank
    hist = model.fit(x, y, batch_size=8, epochs=2, shuffle=True, verbose=0,
                     sample_weight=SAMPLE_WEIGHT, validation_data=(x[:9], y[:9]),
                     callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=after_step),
                                *callbacks])
    return steps, spread[0], hist.history


def run(kind):
    keras.distribution.set_distribution(keras.distribution.DataParallel())
    x, y = data(kind)
    model = build(kind)
    rng = np.random.default_rng(100 + RANK)  # different initial weights on every rank
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype("float32")
                       for w in model.get_weights()])
    initial = model.get_weights()
    writers = [keras.callbacks.CSVLogger(os.path.join(OUT, f"{kind}_log_rank{RANK}.csv")),
               keras.callbacks.ModelCheckpoint(os.path.join(OUT, f"{kind}_ckpt_rank{RANK}.keras"))]
    steps, spread, hist = fit_recording(model, x, y, writers)
    model.save(os.path.join(OUT, f"{kind}_model_rank{RANK}.keras"))
    ev = model.evaluate(x, y, batch_size=8, verbose=0)
    pred = model.predict(x, batch_size=5, verbose=0)
    keras.distribution.set_distribution(None)
    if RANK != 0:
        return
    ev_one = model.evaluate(x, y, batch_size=8, verbose=0)
    pred_one = model.predict(x, batch_size=5, verbose=0)
    single = build(kind)
    single.set_weights(initial)
    ref_steps, _, ref_hist = fit_recording(single, x, y, distributed=False)
    result = {
        "model": kind, "steps": len(steps), "ref_steps": len(ref_steps), "ranks": spread,
        "weights": max(float(np.max(np.abs(a - b))) for a, b in zip(steps, ref_steps)),
        "moved": float(np.max(np.abs(steps[-1] - np.concatenate([w.ravel() for w in initial])))),
        "loss": max(abs(a - b) for a, b in zip(hist["loss"], ref_hist["loss"])),
        "accuracy": max(abs(a - b) for a, b in zip(hist["accuracy"], ref_hist["accuracy"])),
        "val_loss": max(abs(a - b) for a, b in zip(hist["val_loss"], ref_hist["val_loss"])),
        "evaluate": max(abs(a - b) for a, b in zip(ev, ev_one)),
        "predict": float(np.max(np.abs(pred - pred_one))), "predict_shape": list(pred.shape),
    }
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    for kind in sys.argv[2:] or ["mlp", "cnn", "cnn_bn", "lstm"]:
        run(kind)
    COMM.Barrier()
    if RANK == 0:
        print("FILES " + json.dumps(sorted(os.listdir(OUT))), flush=True)
