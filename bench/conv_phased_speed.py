"""A/B timing of a dilated 3x3 conv: algorithm "im2col" vs "phased" in one process.

Alternates the two algorithms repeat by repeat (the machine is shared and noisy) and prints the
median and min/max of each. Usage: python bench/conv_phased_speed.py [N H W C K dil repeats]
"""
import sys
import time

import numpy as np

from faltung import _core

N, H, W, C, K, d, reps = (int(a) for a in (sys.argv[1:] or [64, 32, 32, 64, 64, 2, 15]))
rng = np.random.default_rng(0)
x = rng.standard_normal((N, H, W, C)).astype(np.float32)
w = rng.standard_normal((3, 3, C, K)).astype(np.float32)
b = rng.standard_normal(K).astype(np.float32)
dy = rng.standard_normal((N, H, W, K)).astype(np.float32)
pad = d  # "same" for a 3x3 kernel with dilation d


def fwd(algo):
    return _core.conv2d_forward(x, w, b, 1, 1, pad, pad, H, W, d, d, 1, algo)


def bwd(algo):
    return _core.conv2d_backward(dy, x, w, 1, 1, pad, pad, d, d, 1, True, True, True, algo)


algos = ["im2col", "phased"]
y = {a: fwd(a)[0] for a in algos}
err = np.abs(y["phased"] - y["im2col"]).max() / np.abs(y["im2col"]).max()
print("max |phased - im2col| / max |im2col| =", err)
times = {(op, a): [] for op in ("forward", "backward") for a in algos}
for _ in range(reps):
    for op, f in (("forward", fwd), ("backward", bwd)):
        for a in algos:
            t = time.perf_counter()
            f(a)
            times[op, a].append(1e3 * (time.perf_counter() - t))
print(f"N={N} H={H} W={W} C={C} K={K} dilation={d} pad={pad}, {reps} alternating repeats, ms:")
for op in ("forward", "backward"):
    for a in algos:
        v = times[op, a]
        print(f"  {op:8s} {a:7s} median {np.median(v):7.1f}  min {min(v):7.1f}  max {max(v):7.1f}")
    ratio = np.median(times[op, "im2col"]) / np.median(times[op, "phased"])
    print(f"  {op:8s} speedup (median im2col / median phased) {ratio:.2f}x")
