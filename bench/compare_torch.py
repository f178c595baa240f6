"""faltung vs PyTorch CPU, timed in one run on the same machine.

    python bench/compare_torch.py [--only mlp,conv,depthwise,convT,pool,step,memory,inception,densenet,graph,rnn,ctc,rnnmem,seq2seq,levels,gpu]
                                  [--repeats 15] [--threads 2]

PyTorch lives only in a benchmark venv (`pip install torch==2.13.0`); it is never a
dependency of faltung. Each case runs in rounds: in every round each side is timed once
(median of the calls that fill 50 ms), faltung first on even rounds and last on odd ones.
ratio = the median over the rounds of (faltung time / PyTorch time of the same round), below
1.0 faltung is faster; the times shown are each side's median. Pairing within a round matters
on a shared machine: its speed drifts by 10-30% over seconds, which moves both sides of a round
alike but would move medians taken over different seconds apart. For convolutions PyTorch is
timed in its default NCHW layout and in channels_last, and each round's ratio is taken against
the faster of the two in that round ("best layout"; the minimum of two noisy times favours
PyTorch slightly). Run it on a quiet machine all the same: a busy neighbour makes 2-thread
timings 3-5x slower.

`inception` and `densenet` time a training step of a functional-API model with branches and
concatenations (model.train_on_batch, loss "mse", Adam) against the same nn.Module trained by
hand; the two sides have the same shapes and FLOPs, not the same weights. `graph` reports,
for those faltung models and for a small (batch 4, 8x8) DenseNet block of 4 and of 16 layers,
the share of a training step that the graph runner (faltung.models.graph.Graph.forward and
backward) spends outside the layers' own forward/backward calls, from timing wrappers around
faltung.models.graph.run_forward/run_backward, Graph.forward/backward, the loss and the
optimizer, in the same process; it does not involve PyTorch.

`rnn` times the recurrent layers LSTM, GRU and SimpleRNN (return_sequences=True) against
torch.nn.LSTM/GRU/RNN(batch_first=True) on the same input, at (batch 32, T 100, input 128,
units 256) and (batch 64, T 50, input 64, units 128): forward is layer.forward(x,
training=False) against the module under torch.no_grad(); forward+backward is
layer.forward(x, training=True) then layer.backward(dy) against out, _ = m(x) with
x.requires_grad_() and out.backward(dy), dy a fixed random array of the output's shape. The
script checks that both sides' outputs have the same shape; the weights differ.

`ctc` times the CTC loss per sample (reduction none) at (T 100, N 32, C 28, S 20), (T 500, N 16,
C 100, S 100) and (T 1000, N 8, C 5000, S 50), labels of full length S, inputs of full length T:
"logits" is faltung.ops.ctc_loss(logits) against log_softmax + torch.nn.functional.ctc_loss (what
keras.ops.ctc_loss runs on torch), "log-probs" is ctc_loss(from_log_probs=True) against ctc_loss
alone, each forward and forward+backward (faltung.ops.ctc_loss_and_grad against loss.sum()
.backward()); PyTorch gets its native time-major layout, transposed outside the timing. The
script checks that both sides' losses agree. `ctc` also times faltung's beam search (batch 16,
T 150, 28 classes, beam width 100).

`levels` needs no PyTorch: it times faltung's own layer calls (Winograd, direct, depthwise and
transposed convs, pooling at a memory-bound and a cache-sized batch, LSTM/GRU/SimpleRNN) at the
avx512 level against the avx2 level of the same build, each level in a process of its own
(FALTUNG_CPU=avx2 gives that process OpenBLAS's Haswell kernels too, as on an AVX2 CPU: OpenBLAS
chooses once, when it loads), asking the two processes in turn and alternating them round by
round; it prints its own table (speed-up = avx2 time / avx512 time) and skips on a CPU without
AVX-512.

`gpu` is the GPU column (issue 14): the CIFAR model's training step (batch 32 and 64) and the
`rnnmem` LSTM model's, with faltung's model built under `faltung.device("gpu:0")` against the
same PyTorch model on "cuda" (NCHW and channels_last for the CIFAR model), every step copying
its batch in from host memory and ending when its loss is back on the host (faltung's
train_on_batch returns it; PyTorch's side calls loss.item()). It runs only where faltung was
built with CUDA, finds a device, and PyTorch has CUDA too; elsewhere it prints why it skipped.

`rnnmem` reports the peak resident memory added by 5 training steps of an LSTM model (LSTM 256
units with return_sequences on batch 32, T 100, input 128, then Dense 10 on every step, sparse
cross-entropy, Adam), faltung's train_on_batch against the same nn.LSTM + nn.Linear trained by
hand, each side in a fresh process (like `memory` for the CIFAR step).

`seq2seq` times one training epoch of examples/seq2seq_reverse.py's model (encoder LSTM 128,
RepeatVector, decoder LSTM 128, TimeDistributed softmax Dense; 18,000 strings of 8 digits,
batch 32) written once as Keras code and run by faltung and by Keras 3 on the torch backend
(KERAS_BACKEND=torch; needs `pip install keras`), each side in a fresh process per round, sides
alternating; a warm-up epoch on 640 samples precedes the timed one. It also states the step's
FLOP count and the rate the step reaches against OpenBLAS on the step's largest GEMM shape.
"""
import argparse
import os
import copy
import statistics
import sys
import time

import numpy as np
import torch

import faltung
from faltung import layers

ROWS = []


def timeit(fn, min_time=0.05):
    """Median seconds per call of fn() over the calls that fill min_time (at least one)."""
    times, total = [], 0.0
    while total < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        total += times[-1]
    return statistics.median(times)


def compare(name, sides, rounds, rows=ROWS, timed=False):
    """sides: dict label -> zero-arg callable; 'faltung' must be one of them. timed: each call
    returns its own seconds per call (measured where it runs) instead of being timed here."""
    res = {k: [] for k in sides}
    labels = list(sides)
    ratios = []
    for k in labels:  # warm-up: workspaces, caches, lazy initialisation
        sides[k]()
    for r in range(rounds):
        order = labels if r % 2 == 0 else labels[::-1]
        got = {k: sides[k]() if timed else timeit(sides[k]) for k in order}
        for k, v in got.items():
            res[k].append(v)
        ratios.append(got["faltung"] / min(v for k, v in got.items() if k != "faltung"))
    med = {k: statistics.median(v) for k, v in res.items()}
    ratio = statistics.median(ratios)
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else (ratio,) * 3
    rows.append((name, med, ratio, q1, q3))
    cols = "  ".join(f"{k} {v * 1e3:9.3f} ms" for k, v in med.items())
    print(f"{name:<44} {cols}  ratio {ratio:5.2f} (rounds {q1:.2f}-{q3:.2f})", flush=True)


# ---------------------------------------------------------------------------- helpers
def torch_conv_sides(f_layer, t_mod, x_nhwc, backward):
    """faltung layer vs torch module (NCHW and channels_last) on the same data."""
    rng = np.random.default_rng(0)
    y = f_layer.forward(x_nhwc, training=backward)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    x_nchw = torch.from_numpy(np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2)))
    x_cl = x_nchw.contiguous(memory_format=torch.channels_last)
    t_mod_cl = copy.deepcopy(t_mod).to(memory_format=torch.channels_last)
    dy_t = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))
    dy_cl = dy_t.contiguous(memory_format=torch.channels_last)

    if not backward:
        def f():
            f_layer.forward(x_nhwc, training=False)

        def tn():
            with torch.no_grad():
                t_mod(x_nchw)

        def tc():
            with torch.no_grad():
                t_mod_cl(x_cl)
        return {"faltung": f, "torch_nchw": tn, "torch_cl": tc}

    xg = x_nchw.clone().requires_grad_(True)
    xg_cl = x_cl.clone().requires_grad_(True)

    def fb():
        f_layer.forward(x_nhwc, training=True)
        f_layer.backward(dy, need_dx=True)

    def tnb():
        t_mod.zero_grad(set_to_none=True)
        xg.grad = None
        t_mod(xg).backward(dy_t)

    def tcb():
        t_mod_cl.zero_grad(set_to_none=True)
        xg_cl.grad = None
        t_mod_cl(xg_cl).backward(dy_cl)
    return {"faltung": fb, "torch_nchw": tnb, "torch_cl": tcb}


def bench_conv(repeats):
    rng = np.random.default_rng(0)
    cases = [  # (label, N, H, W, C, K, k, stride, dilation, padding)
        ("cifar conv 3->32 @32", 64, 32, 32, 3, 32, 3, 1, 1, "same"),
        ("cifar conv 32->32 @32", 64, 32, 32, 32, 32, 3, 1, 1, "same"),
        ("cifar conv 32->64 @16", 64, 16, 16, 32, 64, 3, 1, 1, "same"),
        ("cifar conv 64->64 @16", 64, 16, 16, 64, 64, 3, 1, 1, "same"),
        ("cifar conv 64->128 @8", 64, 8, 8, 64, 128, 3, 1, 1, "same"),
        ("cifar conv 128->128 @8", 64, 8, 8, 128, 128, 3, 1, 1, "same"),
        ("vgg conv 256->256 @56 N8", 8, 56, 56, 256, 256, 3, 1, 1, "same"),
        ("conv 64->64 @32 stride 2", 64, 32, 32, 64, 64, 3, 2, 1, "same"),
        ("conv 64->64 @32 dilation 2", 64, 32, 32, 64, 64, 3, 1, 2, "same"),
        ("pointwise conv 1x1 64->128 @32", 64, 32, 32, 64, 128, 1, 1, 1, "same"),
        ("pointwise conv 1x1 256->512 @8 N32", 32, 8, 8, 256, 512, 1, 1, 1, "same"),
    ]
    for label, N, H, W, C, K, k, s, d, pad in cases:
        x = rng.standard_normal((N, H, W, C)).astype(np.float32)
        fl = layers.Conv2D(K, k, strides=s, dilation_rate=d, padding=pad)
        fl.build((None, H, W, C))
        p = (d * (k - 1)) // 2
        tm = torch.nn.Conv2d(C, K, k, stride=s, dilation=d, padding=p)
        with torch.no_grad():
            tm.weight.copy_(torch.from_numpy(fl.kernel.value.transpose(3, 2, 0, 1).copy()))
        for bwd in (False, True):
            compare(f"{label} {'fwd+bwd' if bwd else 'fwd'}", torch_conv_sides(fl, tm, x, bwd), repeats)


def bench_depthwise(repeats):
    """DepthwiseConv2D against torch.nn.Conv2d(C, C, k, groups=C) with the same weights."""
    rng = np.random.default_rng(0)
    for label, N, HW, C, k, s in [("3x3 (64,32,32,64)", 64, 32, 64, 3, 1),
                                  ("3x3 stride 2 (64,32,32,64)", 64, 32, 64, 3, 2),
                                  ("5x5 (32,16,16,128)", 32, 16, 128, 5, 1)]:
        x = rng.standard_normal((N, HW, HW, C)).astype(np.float32)
        fl = layers.DepthwiseConv2D(k, strides=s, padding="same")
        fl.build((None, HW, HW, C))
        tm = torch.nn.Conv2d(C, C, k, stride=s, padding=(k - 1) // 2, groups=C)
        with torch.no_grad():  # Keras (kh, kw, C, 1) -> torch (C, 1, kh, kw)
            tm.weight.copy_(torch.from_numpy(fl.kernel.value.transpose(2, 3, 0, 1).copy()))
            tm.bias.copy_(torch.from_numpy(fl.bias.value))
            want = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
        # (at stride 2 Keras's "same" pads one pixel after, torch's padding=1 one on each side:
        # the same shapes and work, outputs shifted by a pixel, so only stride 1 is compared)
        if s == 1 and not np.allclose(np.asarray(fl.forward(x)), want, atol=1e-4):
            raise AssertionError(f"depthwise {label}: faltung and torch outputs differ")
        for bwd in (False, True):
            compare(f"depthwise conv {label} {'fwd+bwd' if bwd else 'fwd'}", torch_conv_sides(fl, tm, x, bwd),
                    repeats)


def bench_conv_transpose(repeats):
    rng = np.random.default_rng(0)
    N, H, W, C, K = 64, 16, 16, 64, 32
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    fl = layers.Conv2DTranspose(K, 4, strides=2, padding="same")
    fl.build((None, H, W, C))
    tm = torch.nn.ConvTranspose2d(C, K, 4, stride=2, padding=1)
    with torch.no_grad():  # Keras (kh, kw, out, in) -> torch (in, out, kh, kw)
        tm.weight.copy_(torch.from_numpy(fl.kernel.value.transpose(3, 2, 0, 1).copy()))
    for bwd in (False, True):
        compare(f"convT 64->32 16->32 k4 s2 {'fwd+bwd' if bwd else 'fwd'}",
                torch_conv_sides(fl, tm, x, bwd), repeats)


def bench_pool(repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 32, 32, 32)).astype(np.float32)
    for name, fl, tm in [("maxpool 2x2 (64,32,32,32)", layers.MaxPooling2D((2, 2)), torch.nn.MaxPool2d(2)),
                         ("avgpool 2x2 (64,32,32,32)", layers.AveragePooling2D((2, 2)), torch.nn.AvgPool2d(2))]:
        fl.build((None, 32, 32, 32))
        for bwd in (False, True):
            compare(f"{name} {'fwd+bwd' if bwd else 'fwd'}", torch_conv_sides(fl, tm, x, bwd), repeats)


# ------------------------------------------------------------------- whole training
def fashion_mlp_data():
    (x, y), _ = faltung.datasets.fashion_mnist.load_data()
    return x.reshape(-1, 784).astype(np.float32) / 255.0, y.astype(np.int64)


def bench_mlp(repeats):
    x, y = fashion_mlp_data()
    for bs in (32, 128):
        model = faltung.Sequential([layers.Input((784,)), layers.Dense(100, activation="relu"),
                                    layers.Dense(50, activation="relu"), layers.Dense(10, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        tm = torch.nn.Sequential(torch.nn.Linear(784, 100), torch.nn.ReLU(), torch.nn.Linear(100, 50),
                                 torch.nn.ReLU(), torch.nn.Linear(50, 10))
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        lossf = torch.nn.CrossEntropyLoss()

        def f():
            model.fit(x, y, batch_size=bs, epochs=1, verbose=0, shuffle=True)

        def t():
            perm = torch.randperm(len(xt))
            correct = 0
            for i in range(0, len(xt), bs):
                idx = perm[i:i + bs]
                xb, yb = xt[idx], yt[idx]
                opt.zero_grad(set_to_none=True)
                out = tm(xb)
                loss = lossf(out, yb)
                loss.backward()
                opt.step()
                correct += (out.argmax(1) == yb).sum().item()  # accuracy, as fit reports it
        compare(f"MLP 784-100-50-10 epoch, batch {bs}", {"faltung": f, "torch": t}, max(3, repeats // 5))


def cifar_model_faltung():
    return faltung.Sequential([
        layers.Input((32, 32, 3)),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(32, (3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(64, (3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(128, (3, 3), padding="same", activation="relu"),
        layers.Conv2D(128, (3, 3), padding="same", activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(128, activation="relu"), layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax")])


def cifar_model_torch(channels_last):
    nn = torch.nn
    m = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(2048, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
        nn.Linear(64, 10))
    return m.to(memory_format=torch.channels_last) if channels_last else m


def bench_step(repeats):
    rng = np.random.default_rng(0)
    for bs in (32, 64):
        x = rng.random((bs, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, bs)
        model = cifar_model_faltung()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        sides = {"faltung": lambda: model.train_on_batch(x, y)}
        for cl in (False, True):
            tm = cifar_model_torch(cl)
            opt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            if cl:
                xt = xt.contiguous(memory_format=torch.channels_last)
            yt = torch.from_numpy(y)

            def t(tm=tm, opt=opt, xt=xt):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(tm(xt), yt).backward()
                opt.step()
            sides["torch_cl" if cl else "torch_nchw"] = t
        compare(f"CIFAR model train step (Adam), batch {bs}", sides, repeats)


def _status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _memory_child(model_side, bs):
    """Peak resident memory added by 5 training steps, in MiB (run in a fresh process).
    model_side: "cifar:<side>" or "lstm:<side>"."""
    model_kind, side = model_side.split(":")
    if model_kind == "lstm":
        step = _lstm_memory_step(side, bs)
        return _report_peak(step)
    rng = np.random.default_rng(0)
    x = rng.random((bs, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, bs)
    if side == "faltung":
        model = cifar_model_faltung()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        step = lambda: model.train_on_batch(x, y)  # noqa: E731
    else:
        tm = cifar_model_torch(side == "torch_cl")
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        if side == "torch_cl":
            xt = xt.contiguous(memory_format=torch.channels_last)
        yt = torch.from_numpy(y)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(tm(xt), yt).backward()
            opt.step()
    return _report_peak(step)


def _report_peak(step):
    base = _status_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # reset the peak (VmHWM) to the current RSS
        f.write("5")
    for _ in range(5):
        step()
    print((_status_kb("VmHWM") - base) / 1024.0)


def _lstm_memory_step(side, bs, gpu=False):
    """One training step of the `rnnmem` LSTM model (see the module docstring); gpu: faltung's
    model device-resident on GPU 0, torch's on "cuda", the batch copied in every step."""
    T, D, U = 100, 128, 256
    rng = np.random.default_rng(0)
    x = rng.standard_normal((bs, T, D)).astype(np.float32)
    y = rng.integers(0, 10, (bs, T))
    if side == "faltung":
        with faltung.device("gpu:0" if gpu else "cpu"):
            model = faltung.Sequential([layers.Input((T, D)), layers.LSTM(U, return_sequences=True),
                                        layers.Dense(10)])
        model.compile(optimizer="adam",
                      loss=faltung.losses.SparseCategoricalCrossentropy(from_logits=True))
        return lambda: model.train_on_batch(x, y)  # returns the loss: the step has finished
    dev = torch.device("cuda" if gpu else "cpu")
    lstm, head = torch.nn.LSTM(D, U, batch_first=True).to(dev), torch.nn.Linear(U, 10).to(dev)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-3, eps=1e-7)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).reshape(-1)

    def step():
        opt.zero_grad(set_to_none=True)
        out, _ = lstm(xt.to(dev))
        loss = torch.nn.functional.cross_entropy(head(out).reshape(-1, 10), yt.to(dev))
        loss.backward()
        opt.step()
        return loss.item()  # waits for the step, as faltung's returned loss does
    return step


def _peak_memory(model, side, bs):
    import subprocess
    out = subprocess.run([sys.executable, __file__, "--memory-child", f"{model}:{side}", str(bs)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def bench_rnn_memory(repeats):
    peaks = {side: _peak_memory("lstm", side, 32) for side in ("faltung", "torch")}
    print("peak memory of an LSTM training step (256 units, batch 32, T 100, input 128): "
          f"faltung {peaks['faltung']:.1f} MiB  torch {peaks['torch']:.1f} MiB  "
          f"ratio {peaks['faltung'] / peaks['torch']:.2f}", flush=True)


def _seq2seq_child(side):
    """Seconds of one training epoch of the seq2seq example's model, on `side`'s Keras API."""
    if side == "keras":
        os.environ["KERAS_BACKEND"] = "torch"
        import keras
        from keras import layers as kl
    else:
        keras, kl = faltung, layers
    keras.utils.set_random_seed(1)
    length, units, samples = 8, 128, 18000
    digits = np.random.default_rng(1).integers(0, 10, size=(samples, length))
    x, y = np.eye(10, dtype=bool)[digits], digits[:, ::-1]
    model = keras.Sequential([  # examples/seq2seq_reverse.py's model
        kl.Input(shape=(length, 10)),
        kl.LSTM(units),
        kl.RepeatVector(length),
        kl.LSTM(units, return_sequences=True),
        kl.TimeDistributed(kl.Dense(10, activation="softmax")),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[:640], y[:640], batch_size=32, epochs=1, verbose=0)
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    print(time.perf_counter() - t0)


def bench_seq2seq(repeats):
    import importlib.util
    import subprocess
    if importlib.util.find_spec("keras") is None:
        print("seq2seq: skipped, Keras is not installed (pip install keras)", flush=True)
        return
    rounds = max(1, min(repeats, 5))  # a Keras epoch takes tens of seconds
    times = {"faltung": [], "keras": []}
    ratios = []
    for r in range(rounds):
        got = {}
        for side in (("faltung", "keras") if r % 2 == 0 else ("keras", "faltung")):
            out = subprocess.run([sys.executable, __file__, "--seq2seq-child", side],
                                 capture_output=True, text=True, check=True).stdout
            got[side] = float(out.strip().splitlines()[-1])
            times[side].append(got[side])
        ratios.append(got["faltung"] / got["keras"])
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = statistics.median(ratios)
    print(f"seq2seq epoch (18,000 samples, batch 32): faltung {med['faltung']:.2f} s  "
          f"keras-on-torch {med['keras']:.2f} s  ratio {ratio:.3f} "
          f"(rounds {min(ratios):.3f}-{max(ratios):.3f}; {rounds} rounds)", flush=True)
    # FLOPs of one step (batch 32, 8 steps, 128 units, gates 4 x 128): multiply-adds x 2;
    # backward = 2 x forward (input and weight gradients)
    B, T, U, G = 32, 8, 128, 512
    fwd = 2 * B * T * (10 * G + U * G + U * G + U * G + U * 10)
    steps = -(-18000 // B)
    rate = 3 * fwd * steps / med["faltung"] / 1e9
    a = np.random.default_rng(0).standard_normal((B, U)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((U, G)).astype(np.float32)
    gemm_s = timeit(lambda: a @ w, 0.2)
    print(f"  one step = {3 * fwd / 1e6:.0f} MFLOP (forward {fwd / 1e6:.0f}); faltung runs "
          f"{rate:.1f} GFLOP/s over the whole epoch; numpy's OpenBLAS on the step's recurrent "
          f"GEMM shape ({B}x{U} @ {U}x{G}) alone: {2 * B * U * G / gemm_s / 1e9:.1f} GFLOP/s",
          flush=True)


def bench_memory(repeats):
    for bs in (32, 64):
        peaks = {}
        for side in ("faltung", "torch_nchw", "torch_cl"):
            peaks[side] = _peak_memory("cifar", side, bs)
        best = min(peaks["torch_nchw"], peaks["torch_cl"])
        print(f"peak memory of a CIFAR training step, batch {bs}: " +
              "  ".join(f"{k} {v:.1f} MiB" for k, v in peaks.items()) +
              f"  ratio {peaks['faltung'] / best:.2f}", flush=True)


# --------------------------------------------------- functional-API graphs (branches, concat)
def inception_faltung(H=32, W=32, C=64):
    """GoogLeNet-style block: 1x1 (64) | 1x1 (96) -> 3x3 (128) | 1x1 (16) -> 5x5 (32) |
    3x3 max pool stride 1 'same' -> 1x1 (32), concatenated to 256 channels."""
    inp = faltung.Input((H, W, C))
    b1 = layers.Conv2D(64, 1, padding="same", activation="relu")(inp)
    b2 = layers.Conv2D(96, 1, padding="same", activation="relu")(inp)
    b2 = layers.Conv2D(128, 3, padding="same", activation="relu")(b2)
    b3 = layers.Conv2D(16, 1, padding="same", activation="relu")(inp)
    b3 = layers.Conv2D(32, 5, padding="same", activation="relu")(b3)
    b4 = layers.MaxPooling2D(3, strides=1, padding="same")(inp)
    b4 = layers.Conv2D(32, 1, padding="same", activation="relu")(b4)
    out = layers.Concatenate(axis=-1)([b1, b2, b3, b4])
    return faltung.Model(inp, out)


class InceptionTorch(torch.nn.Module):
    def __init__(self, C=64):
        super().__init__()
        nn = torch.nn
        self.b1 = nn.Conv2d(C, 64, 1)
        self.b2a, self.b2b = nn.Conv2d(C, 96, 1), nn.Conv2d(96, 128, 3, padding=1)
        self.b3a, self.b3b = nn.Conv2d(C, 16, 1), nn.Conv2d(16, 32, 5, padding=2)
        self.pool, self.b4 = nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(C, 32, 1)

    def forward(self, x):
        r = torch.nn.functional.relu
        return torch.cat([r(self.b1(x)), r(self.b2b(r(self.b2a(x)))), r(self.b3b(r(self.b3a(x)))),
                          r(self.b4(self.pool(x)))], dim=1)


def densenet_faltung(H=32, W=32, C=64, n_layers=4, growth=32, bottleneck=128):
    """DenseNet-BC dense block: each layer BN -> ReLU -> 1x1 conv (bottleneck) -> BN -> ReLU ->
    3x3 conv (growth) on the concatenation of the block input and all earlier outputs. The
    convolutions have no bias, as in Keras's DenseNet."""
    inp = faltung.Input((H, W, C))
    x = inp
    for _ in range(n_layers):
        h = layers.BatchNormalization()(x)
        h = layers.ReLU()(h)
        h = layers.Conv2D(bottleneck, 1, padding="same", use_bias=False)(h)
        h = layers.BatchNormalization()(h)
        h = layers.ReLU()(h)
        h = layers.Conv2D(growth, 3, padding="same", use_bias=False)(h)
        x = layers.Concatenate(axis=-1)([x, h])
    return faltung.Model(inp, x)


class DenseNetTorch(torch.nn.Module):
    def __init__(self, C=64, n_layers=4, growth=32, bottleneck=128):
        super().__init__()
        nn = torch.nn
        mods = []
        for i in range(n_layers):
            cin = C + i * growth
            mods.append(nn.Sequential(  # Keras's BatchNormalization defaults: eps 1e-3, momentum 0.99
                nn.BatchNorm2d(cin, eps=1e-3, momentum=0.01), nn.ReLU(),
                nn.Conv2d(cin, bottleneck, 1, bias=False),
                nn.BatchNorm2d(bottleneck, eps=1e-3, momentum=0.01), nn.ReLU(),
                nn.Conv2d(bottleneck, growth, 3, padding=1, bias=False)))
        self.layers = nn.ModuleList(mods)

    def forward(self, x):
        for m in self.layers:
            x = torch.cat([x, m(x)], dim=1)
        return x


def _graph_step_sides(f_model, t_factory, x):
    """faltung train_on_batch vs a hand-written PyTorch step (NCHW and channels_last) on the
    same input, each against a fixed random target of its output's shape."""
    rng = np.random.default_rng(1)
    f_out = np.asarray(f_model(x))
    y = rng.standard_normal(f_out.shape).astype(np.float32)
    f_model.compile(optimizer="adam", loss="mse")
    sides = {"faltung": lambda: f_model.train_on_batch(x, y)}
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(np.ascontiguousarray(y.transpose(0, 3, 1, 2)))
    for cl in (False, True):
        tm = t_factory().train()
        xs, ys = xt, yt
        if cl:
            tm = tm.to(memory_format=torch.channels_last)
            xs = xt.contiguous(memory_format=torch.channels_last)
            ys = yt.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            t_shape = tuple(tm(xs).shape)
        n, c, h, w = t_shape
        if (n, h, w, c) != f_out.shape:
            raise AssertionError(f"output shapes differ: faltung {f_out.shape}, torch NCHW {t_shape}")
        opt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)

        def t(tm=tm, opt=opt, xs=xs, ys=ys):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(tm(xs), ys).backward()
            opt.step()
        sides["torch_cl" if cl else "torch_nchw"] = t
    return sides, f_out.shape


def bench_inception(repeats):
    rng = np.random.default_rng(0)
    N, H, W, C = 32, 32, 32, 64
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    sides, shape = _graph_step_sides(inception_faltung(H=H, W=W, C=C), lambda: InceptionTorch(C), x)
    compare(f"Inception block train step, batch {N} ({H}x{W}x{C} -> {shape[-1]})", sides, repeats)


def bench_densenet(repeats):
    rng = np.random.default_rng(0)
    N, H, W, C = 32, 32, 32, 64
    x = rng.standard_normal((N, H, W, C)).astype(np.float32)
    sides, shape = _graph_step_sides(densenet_faltung(H=H, W=W, C=C), lambda: DenseNetTorch(C), x)
    compare(f"DenseNet-BC block (4 layers) train step, batch {N} ({H}x{W}x{C} -> {shape[-1]})",
            sides, repeats)


# ------------------------------------------------------------ what the graph runner costs
def _graph_overhead(name, model, x, steps):
    """Time `steps` train_on_batch calls with timing wrappers around Graph.forward/backward,
    the layer calls that graph.py makes (faltung.models.graph.run_forward/run_backward), the
    loss and the optimizer. Overhead = time in Graph.forward+backward minus time inside the
    wrapped layer calls, as a share of the whole (instrumented) train_on_batch; median over
    the steps. It includes what the runner does between layer calls: argument packing, call
    contexts, freeing values, and summing the gradients of tensors with several consumers.
    Also printed: the same share less the wrappers' own cost (calibrated on an empty call), and
    `steps` uninstrumented steps, interleaved, to show what the instrumentation adds."""
    import faltung.models.graph as G
    from time import perf_counter
    rng = np.random.default_rng(1)
    y = rng.standard_normal(np.asarray(model(x)).shape).astype(np.float32)
    model.compile(optimizer="adam", loss="mse")
    acc = {"graph": 0.0, "layers": 0.0, "loss": 0.0, "opt": 0.0, "calls": 0}

    def timed(fn, key, count=False):
        def wrapper(*a, **k):
            t0 = perf_counter()
            try:
                return fn(*a, **k)
            finally:
                acc[key] += perf_counter() - t0
                if count:
                    acc["calls"] += 1
        return wrapper

    # what one wrapper adds around the wrapped call but outside its own t0..t1 (the call into
    # the wrapper, try/finally, the bookkeeping): it lands in the graph overhead, so measure it
    cal = timed(lambda *a, **k: None, "layers", count=True)
    t0 = perf_counter()
    for _ in range(20000):
        cal(1, 2, 3, training=True)
    wrap_cost = (perf_counter() - t0 - acc["layers"]) / 20000
    orig = (G.run_forward, G.run_backward)
    graph = model._graph

    def install():
        G.run_forward, G.run_backward = timed(orig[0], "layers", True), timed(orig[1], "layers", True)
        graph.forward, graph.backward = timed(Graph_forward, "graph"), timed(Graph_backward, "graph")
        model._losses = timed(losses, "loss")
        model.optimizer.apply = timed(opt_apply, "opt")

    def uninstall():
        G.run_forward, G.run_backward = orig
        for obj, attr in ((graph, "forward"), (graph, "backward"), (model, "_losses"),
                          (model.optimizer, "apply")):
            obj.__dict__.pop(attr, None)

    Graph_forward, Graph_backward = graph.forward, graph.backward
    losses, opt_apply = model._losses, model.optimizer.apply
    for _ in range(3):
        model.train_on_batch(x, y)
    # instrumented and plain steps alternate (which goes first too), so that the plain time,
    # what the instrumentation adds to a step, sees the same drift of the host
    rows, plain = [], []
    try:
        for i in range(2 * steps):
            instrumented = (i % 4) in (0, 3)
            if instrumented:
                install()
                for k in acc:
                    acc[k] = 0 if k == "calls" else 0.0
            t0 = perf_counter()
            model.train_on_batch(x, y)
            total = perf_counter() - t0
            if instrumented:
                uninstall()
                rows.append((total, acc["graph"], acc["layers"], acc["loss"], acc["opt"], acc["calls"]))
            else:
                plain.append(total)
    finally:
        uninstall()
    med = lambda vals: statistics.median(vals)  # noqa: E731
    total = med([r[0] for r in rows])
    over = [r[1] - r[2] for r in rows]
    share = [(r[1] - r[2]) / r[0] for r in rows]
    share_corr = [(r[1] - r[2] - r[5] * wrap_cost) / r[0] for r in rows]
    q1, _, q3 = statistics.quantiles(share, n=4, method="inclusive")
    calls = rows[0][5]
    n_nodes = len(graph.nodes)
    rest = [r[0] - r[1] - r[3] - r[4] for r in rows]
    print(f"{name}: {n_nodes} nodes, {calls} layer calls per step; step {total * 1e3:.3f} ms "
          f"(uninstrumented {med(plain) * 1e3:.3f} ms)\n"
          f"    layers {med([r[2] for r in rows]) * 1e3:.3f} ms, graph runner outside layers "
          f"{med(over) * 1e3:.3f} ms, loss {med([r[3] for r in rows]) * 1e3:.3f} ms, optimizer "
          f"{med([r[4] for r in rows]) * 1e3:.3f} ms, rest of train_on_batch "
          f"{med(rest) * 1e3:.3f} ms\n"
          f"    graph overhead {100 * med(share):.2f}% of the step (steps {100 * q1:.2f}-"
          f"{100 * q3:.2f}%), {100 * med(share_corr):.2f}% without the wrappers' own cost "
          f"({wrap_cost * 1e6:.2f} us a call); per node (forward+backward) "
          f"{med(over) / n_nodes * 1e6:.1f} us, {(med(over) - calls * wrap_cost) / n_nodes * 1e6:.1f} "
          f"us without the wrappers", flush=True)


def bench_graph(repeats):
    """Graph-runner overhead (no PyTorch): the two batch-32 blocks, then a deeper, cheaper
    graph where the per-node cost shows."""
    rng = np.random.default_rng(0)
    steps = max(50, 4 * repeats)  # instrumented steps; as many plain ones alternate with them
    for name, build, shape, n in [
            ("Inception block, batch 32, 32x32x64", inception_faltung, (32, 32, 32, 64), steps),
            ("DenseNet-BC block (4 layers), batch 32, 32x32x64", densenet_faltung, (32, 32, 32, 64), steps),
            ("DenseNet-BC block (4 layers), batch 4, 8x8x64",
             lambda: densenet_faltung(8, 8), (4, 8, 8, 64), 10 * steps),
            ("DenseNet-BC block (16 layers), batch 4, 8x8x64",
             lambda: densenet_faltung(8, 8, n_layers=16), (4, 8, 8, 64), 10 * steps)]:
        x = rng.standard_normal(shape).astype(np.float32)
        _graph_overhead(name, build(), x, n)


# ------------------------------------------------------------------------ recurrent layers
def bench_rnn(repeats):
    rng = np.random.default_rng(0)
    kinds = [("LSTM", layers.LSTM, torch.nn.LSTM), ("GRU", layers.GRU, torch.nn.GRU),
             ("SimpleRNN", layers.SimpleRNN, torch.nn.RNN)]
    for N, T, D, U in [(32, 100, 128, 256), (64, 50, 64, 128)]:
        x = rng.standard_normal((N, T, D)).astype(np.float32)
        xt = torch.from_numpy(x)
        for name, f_cls, t_cls in kinds:
            fl = f_cls(U, return_sequences=True)
            fl.build((None, T, D))
            tm = t_cls(D, U, batch_first=True)
            y = np.asarray(fl.forward(x, training=False))
            with torch.no_grad():
                t_shape = tuple(tm(xt)[0].shape)
            if t_shape != y.shape:
                raise AssertionError(f"{name} output shapes differ: faltung {y.shape}, torch {t_shape}")
            dy = rng.standard_normal(y.shape).astype(np.float32)
            dy_t = torch.from_numpy(dy)
            xg = xt.clone().requires_grad_(True)

            def f(fl=fl):
                fl.forward(x, training=False)

            def t(tm=tm):
                with torch.no_grad():
                    tm(xt)

            def fb(fl=fl, dy=dy):
                fl.forward(x, training=True)
                fl.backward(dy)

            def tb(tm=tm, xg=xg, dy_t=dy_t):
                tm.zero_grad(set_to_none=True)
                xg.grad = None
                out, _ = tm(xg)
                out.backward(dy_t)
            label = f"{name} {U} units, batch {N}, T {T}, input {D}"
            compare(f"{label} fwd", {"faltung": f, "torch": t}, repeats)
            compare(f"{label} fwd+bwd", {"faltung": fb, "torch": tb}, repeats)


def bench_ctc(repeats):
    rng = np.random.default_rng(0)
    fn = torch.nn.functional
    for T, N, C, S in [(100, 32, 28, 20), (500, 16, 100, 100), (1000, 8, 5000, 50)]:
        logits = rng.standard_normal((N, T, C)).astype(np.float32)
        labels = rng.integers(1, C, size=(N, S)).astype(np.int32)
        ll = np.full(N, S, np.int32)
        il = np.full(N, T, np.int32)
        logp = np.log(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
        t_logits = torch.from_numpy(logits.transpose(1, 0, 2).copy())  # (T, N, C)
        t_logp = torch.from_numpy(logp.transpose(1, 0, 2).copy())
        t_labels, t_ll, t_il = (torch.from_numpy(a.astype(np.int64)) for a in (labels, ll, il))

        def t_loss(z, from_logits):
            lp = fn.log_softmax(z, dim=-1) if from_logits else z
            return fn.ctc_loss(lp, t_labels, t_il, t_ll, blank=0, reduction="none")

        with torch.no_grad():
            want = t_loss(t_logits, True).numpy()
        got = faltung.ops.ctc_loss(labels, logits, ll, il)
        if not np.allclose(got, want, rtol=1e-3):
            raise AssertionError(f"CTC losses differ: faltung {got[:3]}, torch {want[:3]}")
        for kind, x, tx, from_logits in [("logits", logits, t_logits, True),
                                         ("log-probs", logp, t_logp, False)]:
            def f(x=x, fl=from_logits):
                faltung.ops.ctc_loss(labels, x, ll, il, from_log_probs=not fl)

            def t(tx=tx, fl=from_logits):
                with torch.no_grad():
                    t_loss(tx, fl)

            def fb(x=x, fl=from_logits):
                faltung.ops.ctc_loss_and_grad(labels, x, ll, il, from_log_probs=not fl)

            def tb(tx=tx, fl=from_logits):
                z = tx.detach().requires_grad_(True)
                t_loss(z, fl).sum().backward()
            label = f"CTC {kind} T {T}, N {N}, C {C}, S {S}"
            compare(f"{label} fwd", {"faltung": f, "torch": t}, repeats)
            compare(f"{label} fwd+bwd", {"faltung": fb, "torch": tb}, repeats)
    x = rng.standard_normal((16, 150, 28)).astype(np.float32) * 3
    lengths = np.full(16, 150, np.int32)
    times = [timeit(lambda: faltung.ops.ctc_decode(x, lengths, strategy="beam_search",
                                                   beam_width=100)) for _ in range(repeats)]
    print(f"CTC beam search batch 16, T 150, C 28, beam 100: faltung {statistics.median(times) * 1e3:.1f} ms "
          f"(median of {repeats})", flush=True)


# ---------------------------------------------------------------- CPU levels, paired
def _level_cases():
    """(label, layer factory, input shape) of the `levels` section, alike in both processes."""
    cases = []
    for label, N, H, W, C, K, k, s, d in [
            ("Winograd conv 32->32 @32", 64, 32, 32, 32, 32, 3, 1, 1),
            ("Winograd conv 64->64 @16", 64, 16, 16, 64, 64, 3, 1, 1),
            ("Winograd conv 128->128 @8", 64, 8, 8, 128, 128, 3, 1, 1),
            ("Winograd conv 256->256 @56 N8", 8, 56, 56, 256, 256, 3, 1, 1),
            ("direct conv 3->32 @32", 64, 32, 32, 3, 32, 3, 1, 1),
            ("direct conv 64->64 @32 stride 2", 64, 32, 32, 64, 64, 3, 2, 1),
            ("direct conv 64->64 @32 dilation 2", 64, 32, 32, 64, 64, 3, 1, 2)]:
        cases.append((label, lambda K=K, k=k, s=s, d=d: layers.Conv2D(K, k, strides=s, dilation_rate=d,
                                                                       padding="same"), (N, H, W, C)))
    cases += [("depthwise conv 3x3 (64,32,32,64)", lambda: layers.DepthwiseConv2D(3, padding="same"),
               (64, 32, 32, 64)),
              ("convT 64->32 16->32 k4 s2", lambda: layers.Conv2DTranspose(32, 4, strides=2, padding="same"),
               (64, 16, 16, 64))]
    for N in (64, 8):  # memory-bound at batch 64 (8 MB in, 2 MB out); batch 8 stays in the caches
        cases += [(f"maxpool 2x2 ({N},32,32,32)", lambda: layers.MaxPooling2D((2, 2)), (N, 32, 32, 32)),
                  (f"avgpool 2x2 ({N},32,32,32)", lambda: layers.AveragePooling2D((2, 2)), (N, 32, 32, 32))]
    for N, T, D, U in [(32, 100, 128, 256), (64, 50, 64, 128)]:
        for name, cls in [("LSTM", layers.LSTM), ("GRU", layers.GRU), ("SimpleRNN", layers.SimpleRNN)]:
            cases.append((f"{name} {U} units, batch {N}, T {T}, input {D}",
                          lambda cls=cls, U=U: cls(U, return_sequences=True), (N, T, D)))
    return cases


def _levels_child(threads):
    """One side of `levels`: builds every case, says which kernels it runs, then times case
    number i (forward 2 i, forward+backward 2 i + 1) for each i read from stdin."""
    faltung.set_num_threads(threads)
    faltung.utils.set_random_seed(0)  # the same weights in both processes
    info = faltung.build_info()
    print(info["cpu_level"], info["blas_core"], flush=True)
    rng = np.random.default_rng(0)
    fns = []
    for _, make, shape in _level_cases():
        layer = make()
        x = rng.standard_normal(shape).astype(np.float32)
        layer.build((None,) + shape[1:])
        dy = rng.standard_normal(np.asarray(layer.forward(x, training=True)).shape).astype(np.float32)

        def f(layer=layer, x=x):
            layer.forward(x, training=False)

        def fb(layer=layer, x=x, dy=dy):
            layer.forward(x, training=True)
            layer.backward(dy)
        fns += [f, fb]
    for line in sys.stdin:
        print(timeit(fns[int(line)]), flush=True)


def bench_levels(repeats):
    """faltung at the avx512 level against the avx2 level of the same build: two processes,
    one with FALTUNG_CPU=avx2 (faltung's avx2 kernels and OpenBLAS's Haswell kernels, what an
    AVX2 CPU runs) and one uncapped, each timing a case when asked, so that once both have built
    their cases only one of them runs at a time; the rounds alternate the two as the PyTorch
    sections alternate the sides. Needs a CPU with AVX-512."""
    import subprocess
    from faltung import _core
    if "avx512" not in _core.usable_levels():
        print(f"levels: skipped, this CPU runs {_core.usable_levels()} (no avx512)", flush=True)
        return
    # OpenBLAS chooses its kernels once, when it loads, from OPENBLAS_CORETYPE (a user's value
    # reaches both processes) or, under each process's FALTUNG_CPU, faltung's choice.
    threads = faltung.get_num_threads()  # --threads
    procs = {}
    try:
        for side, cap in (("faltung", "avx512"), ("avx2", "avx2")):
            procs[side] = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--levels-child", str(threads)],
                                           env=dict(os.environ, FALTUNG_CPU=cap), stdin=subprocess.PIPE,
                                           stdout=subprocess.PIPE, text=True)
            runs = procs[side].stdout.readline().split()
            if not runs or runs[0] != cap:
                raise RuntimeError(f"levels: the FALTUNG_CPU={cap} process runs {runs or 'nothing (it failed)'}")
            print(f"levels: {side} process runs {' '.join(runs)}", flush=True)

        def remote(proc, i):
            def call():
                proc.stdin.write(f"{i}\n")
                proc.stdin.flush()
                return float(proc.stdout.readline())
            return call
        rows = []
        for c, (label, _, _) in enumerate(_level_cases()):
            for kind, i in (("fwd", 2 * c), ("fwd+bwd", 2 * c + 1)):
                compare(f"{label} {kind}", {side: remote(p, i) for side, p in procs.items()}, repeats, rows,
                        timed=True)
    finally:
        for p in procs.values():
            p.stdin.close()
            p.wait(timeout=60)
    print("\n| kernel (layer call) | avx2 ms | avx512 ms | speed-up avx512 over avx2 (median of rounds) "
          "| quartiles |")
    print("|---|---:|---:|---:|---:|")
    for name, med, ratio, q1, q3 in rows:
        print(f"| {name} | {med['avx2'] * 1e3:.2f} | {med['faltung'] * 1e3:.2f} | {1 / ratio:.2f} "
              f"| {1 / q3:.2f}-{1 / q1:.2f} |", flush=True)


def gpu_unavailable():
    """Why the `gpu` group cannot run here, or None when both sides have a CUDA device."""
    info = faltung.build_info()
    if not info.get("cuda"):
        return "faltung was built without CUDA (pip install -Ccmake.define.FALTUNG_CUDA=ON .)"
    if not info.get("cuda_devices"):
        return f"faltung finds no CUDA device ({info.get('cuda_error') or 'no device'})"
    if not torch.cuda.is_available():
        return "this PyTorch sees no CUDA device (a CPU wheel, or no driver)"
    return None


def bench_gpu(repeats):
    """The GPU column: training steps with faltung's model device-resident on GPU 0 against the
    same model in PyTorch on "cuda", each step taking its batch from host memory and ending
    when its loss is back on the host."""
    why = gpu_unavailable()
    if why:
        print(f"gpu: skipped: {why}", flush=True)
        return
    dev = torch.device("cuda")
    rng = np.random.default_rng(0)
    for bs in (32, 64):
        x = rng.random((bs, 32, 32, 3), dtype=np.float32)
        y = rng.integers(0, 10, bs)
        with faltung.device("gpu:0"):
            model = cifar_model_faltung()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        sides = {"faltung": lambda model=model, x=x, y=y: model.train_on_batch(x, y)}
        for cl in (False, True):
            tm = cifar_model_torch(cl).to(dev)
            opt = torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7)
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            yt = torch.from_numpy(y)

            def t(tm=tm, opt=opt, xt=xt, yt=yt, cl=cl):
                opt.zero_grad(set_to_none=True)
                xd = xt.to(dev)
                if cl:
                    xd = xd.contiguous(memory_format=torch.channels_last)
                loss = torch.nn.functional.cross_entropy(tm(xd), yt.to(dev))
                loss.backward()
                opt.step()
                return loss.item()
            sides["torch_cl" if cl else "torch_nchw"] = t
        compare(f"GPU CIFAR model train step (Adam), batch {bs}", sides, repeats)
    compare("GPU LSTM 256 train step (Adam), batch 32, T 100, input 128",
            {side: _lstm_memory_step(side, 32, gpu=True) for side in ("faltung", "torch")}, repeats)


SECTIONS = {"mlp": bench_mlp, "conv": bench_conv, "depthwise": bench_depthwise, "convT": bench_conv_transpose,
            "pool": bench_pool, "step": bench_step, "memory": bench_memory,
            "inception": bench_inception, "densenet": bench_densenet, "graph": bench_graph,
            "rnn": bench_rnn, "ctc": bench_ctc, "rnnmem": bench_rnn_memory,
            "seq2seq": bench_seq2seq, "levels": bench_levels, "gpu": bench_gpu}


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--memory-child":
        torch.set_num_threads(2)
        return _memory_child(sys.argv[2], int(sys.argv[3]))
    if len(sys.argv) == 3 and sys.argv[1] == "--levels-child":
        return _levels_child(int(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == "--seq2seq-child":
        torch.set_num_threads(2)
        return _seq2seq_child(sys.argv[2])
    p = argparse.ArgumentParser()
    p.add_argument("--only", default=",".join(SECTIONS))
    p.add_argument("--repeats", type=int, default=15, help="rounds per case")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    faltung.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, faltung {faltung.__version__}, threads {a.threads}, "
          f"python {sys.version.split()[0]}")
    print(f"# {faltung.build_info()}")
    for s in a.only.split(","):
        SECTIONS[s](a.repeats)
    # the times are each side's median; the ratio is the median of the rounds' ratios, so it
    # need not equal the quotient of the two times
    print("\n| case | faltung ms | PyTorch ms (best layout) | ratio faltung/PyTorch (median of rounds) "
          "| ratio quartiles |")
    print("|---|---:|---:|---:|---:|")
    for name, med, ratio, q1, q3 in ROWS:
        best = min(v for k, v in med.items() if k != "faltung")
        print(f"| {name} | {med['faltung'] * 1e3:.2f} | {best * 1e3:.2f} | {ratio:.2f} | {q1:.2f}-{q3:.2f} |")


if __name__ == "__main__":
    main()
