"""Instruction counts of one recurrent call under callgrind (the machine is shared: counts,
not times). Run:
    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out python bench/rnn_callgrind.py \
        lstm 32 10 128 256 fwd 3 1
    callgrind_annotate --inclusive=yes /tmp/cg.out | grep -E 'Forward|Backward' | head
Arguments: cell B T F U mode reps threads. mode: fwd (inference forward), train (forward
filling the saved buffer), bwd (one forward with training, then the backward). The call runs
reps times: the difference of two runs with different reps, per call, cancels the start-up.
With one thread the counts are the work alone (with two, valgrind serializes the team and the
threads' spin-waits at barriers add a varying count). Valgrind 3.19 hides AVX-512, so the
avx2 level is what it measures."""
import sys

import numpy as np

import faltung
from faltung import ops

cell, B, T, F, U, mode, reps, threads = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6], *map(int, sys.argv[7:9])
faltung.set_num_threads(threads)
G = {"simple_rnn": 1, "lstm": 4, "gru": 3}[cell]
rng = np.random.default_rng(0)
x = rng.standard_normal((B, T, F)).astype(np.float32)
W = (rng.standard_normal((F, G * U)) * 0.1).astype(np.float32)
R = (rng.standard_normal((U, G * U)) * 0.1).astype(np.float32)
b = (rng.standard_normal((2, G * U) if cell == "gru" else (G * U,)) * 0.1).astype(np.float32)
fwd = {"simple_rnn": ops.simple_rnn_forward, "lstm": ops.lstm_forward, "gru": ops.gru_forward}[cell]
bwd = {"simple_rnn": ops.simple_rnn_backward, "lstm": ops.lstm_backward, "gru": ops.gru_backward}[cell]
dhs = rng.standard_normal((B, T, U)).astype(np.float32)
for _ in range(reps):
    out = fwd(x, W, R, b, training=mode != "fwd")
    if mode == "bwd":
        bwd(out[-1], dhs, None, None)
