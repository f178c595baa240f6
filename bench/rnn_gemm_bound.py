"""How close the recurrent layers get to their GEMM-bound limit: the time OpenBLAS (numpy's, all
threads) needs for a layer's matrix products alone, against faltung's time for the whole layer.

    python bench/rnn_gemm_bound.py [--repeats 7]

The products, for batch N, T steps, F features, U units, G gates (LSTM 4, GRU 3, SimpleRNN 1):
forward the input projection (N T, F) @ (F, G U) and T recurrent products (N, U) @ (U, G U);
backward T products (N, G U) @ (G U, U), the weight gradients (F, N T) @ (N T, G U) and
(U, N T) @ (N T, G U), and the input gradient (N T, G U) @ (G U, F). ratio = GEMM time / faltung
time: above 1, faltung runs the whole layer (gates, masks, copies included) in less time than
OpenBLAS needs for its products called one by one. Every faltung case is timed before any GEMM
and each layer kind runs in its own process: OpenBLAS's threads keep spinning for a while after its last call and
would slow faltung's threads down (measured: 4-7x for the first 0.1-0.2 s).
"""
import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

CASES = [(32, 100, 128, 256), (64, 50, 64, 128)]
KINDS = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def timeit(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def child(kind, repeats):
    from faltung import layers
    rng = np.random.default_rng(0)
    G = KINDS[kind]
    faltung_ms = []
    for N, T, F, U in CASES:  # every faltung case first, then every GEMM (see the docstring)
        layer = getattr(layers, kind)(U, return_sequences=True)
        layer.build((None, T, F))
        # the orthogonal recurrent initializer runs a QR in numpy's LAPACK, whose OpenBLAS threads
        # then spin for ~0.1-0.2 s and take the cores (the first calls ran 4-7x slower)
        time.sleep(0.5)
        x = rng.standard_normal((N, T, F)).astype(np.float32)
        dy = rng.standard_normal((N, T, U)).astype(np.float32)

        def fwd_bwd():
            layer.forward(x, training=True)
            layer.backward(dy)
        faltung_ms.append((timeit(lambda: layer.forward(x), repeats), timeit(fwd_bwd, repeats)))
    for (N, T, F, U), (f_fwd, f_all) in zip(CASES, faltung_ms):
        X, W = rng.standard_normal((N * T, F), np.float32), rng.standard_normal((F, G * U), np.float32)
        h, R = rng.standard_normal((N, U), np.float32), rng.standard_normal((U, G * U), np.float32)
        dZ, Hm = rng.standard_normal((N * T, G * U), np.float32), rng.standard_normal((N * T, U), np.float32)
        dz = rng.standard_normal((N, G * U), np.float32)

        def gemm_fwd():
            X @ W
            for _ in range(T):
                h @ R

        def gemm_bwd():
            for _ in range(T):
                dz @ R.T
            X.T @ dZ
            Hm.T @ dZ
            dZ @ W.T
        g_fwd = timeit(gemm_fwd, repeats)
        g_all = g_fwd + timeit(gemm_bwd, repeats)
        print(f"| {kind} {U} units, batch {N}, T {T}, input {F} | {g_fwd:.2f} | {f_fwd:.2f} | "
              f"{g_fwd / f_fwd:.2f} | {g_all:.2f} | {f_all:.2f} | {g_all / f_all:.2f} |", flush=True)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], int(sys.argv[3]))
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    print("| layer | GEMMs fwd ms | faltung fwd ms | ratio | GEMMs fwd+bwd ms | faltung fwd+bwd ms | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        subprocess.run([sys.executable, __file__, "--child", kind, str(a.repeats)], check=True)


if __name__ == "__main__":
    main()
