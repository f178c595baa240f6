"""Cost model of data-parallel training on N nodes (bench/RESULTS.md, 2026-12-02 DataParallel
section), for the seeds' CIFAR-10 CNN and the OCR model of examples/ocr_ctc.py.

    python bench/dp_cost_model.py                      # step times from bench/RESULTS.md
    python bench/dp_cost_model.py --measure 20         # ... and measured here (median, min)
    python bench/dp_cost_model.py --cifar-ms 95.07 --ocr-ms 22.6 --alpha-us 25,2

One node = one process with the step time given (per-node batch b0: CIFAR 64, OCR 32).
Gradients are float32: G = 4 x trainable weights bytes. Per step, DataParallel reduces G
in k all-reduces (its ~1 MiB buckets, plus one for BatchNormalization's moving
statistics). Ring all-reduce on N nodes, bandwidth BW, latency alpha per message:

    T_ar = 2 (N-1) / N x G / BW  +  k x 2 (N-1) x alpha

Compute scales with the per-node batch b: T_c(b) = b x (step time at b0 / b0) (linear in
the batch, a slight overestimate at small b). Scaling efficiency, without overlap,
E = T_c / (T_c + T_ar); with the all-reduce fully hidden behind backward (a share
`--backward-share` of the step), E_overlap = T_c / max(T_c, (1 - share) T_c + T_ar).
E >= 0.8 (no overlap) needs T_ar <= T_c / 4, hence
    per-node batch  b >= 4 T_ar / (T_c(b0) / b0)
    compression     c >= (2 (N-1)/N x G / BW) / (T_c / 4 - k x 2 (N-1) x alpha)
(c = 1: none needed; "latency-bound" when the latency term alone exceeds T_c / 4, which
no compression fixes). "E, tree latency": the same bandwidth term with a latency term of
k x 2 log2(N) x alpha (recursive halving/doubling, what MPICH picks for long vectors on
many ranks) instead of the ring's k x 2 (N-1) x alpha. "E_overlap (ideal)" is an upper
bound: only buckets started before backward ends can hide (a model whose gradients fit one
bucket, like the OCR model's 0.38 MB in 1 MiB buckets, hides nothing).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

import faltung
from faltung import layers

QUIET_MS = {"cifar": 95.07, "ocr": 22.6}  # bench/RESULTS.md: CIFAR batch 64 (2026-11-30
# night, 2 threads), OCR 105.9 s / (15 epochs x 313 steps) at batch 32 (2026-12-02 later)
BATCH = {"cifar": 64, "ocr": 32}
NODES = (8, 64, 512)
LINKS_GBPS = (10, 100)


def cifar_model():
    """The seeds' CIFAR-10 CNN (bench/compare_torch.py's cifar_model_faltung)."""
    conv = [layers.Conv2D(f, (3, 3), padding="same", activation="relu") for f in
            (32, 32, 64, 64, 128, 128)]
    return faltung.Sequential([
        layers.Input((32, 32, 3)), conv[0], conv[1], layers.MaxPooling2D((2, 2)),
        conv[2], conv[3], layers.MaxPooling2D((2, 2)), conv[4], conv[5],
        layers.MaxPooling2D((2, 2)), layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(128, activation="relu"), layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax")])


def ocr_model(classes=62, height=32, width=128):
    """examples/ocr_ctc.py's model (61 characters + the CTC blank; 32 x 128 lines)."""
    def conv_block(filters):
        return [layers.Conv2D(filters, 3, padding="same", use_bias=False),
                layers.BatchNormalization(), layers.Activation("relu"), layers.MaxPooling2D(2)]
    steps = width // 4
    return faltung.Sequential([
        layers.Input(shape=(height, width, 1)), *conv_block(16), *conv_block(32),
        layers.Permute((2, 1, 3)), layers.Reshape((steps, (height // 4) * 32)),
        layers.Dense(64, activation="relu"),
        layers.Bidirectional(layers.LSTM(64, return_sequences=True)),
        layers.Dense(classes)])


def compiled(kind):
    if kind == "cifar":
        model = cifar_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    else:
        model = ocr_model()
        model.compile(optimizer="adam", loss=faltung.losses.CTC())
    return model


def batch(kind, n, rng):
    if kind == "cifar":
        return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n)
    labels = rng.integers(1, 62, (n, 8)).astype(np.int32)  # 8-character lines, no blank
    return rng.random((n, 32, 128, 1), dtype=np.float32), labels


def describe(kind, model):
    """Trainable weights per layer (the arithmetic), total, and the all-reduce count k."""
    from faltung.distribution.replica import ShardedGraph
    print(f"{kind}: trainable weights per layer")
    for layer in model.layers:
        shapes = [v.value.shape for v in layer.trainable_weights]
        if shapes:
            n = sum(int(np.prod(s)) for s in shapes)
            print(f"    {layer.name:<28} {' + '.join('x'.join(map(str, s)) for s in shapes)} = {n:,}")
    n = sum(v.value.size for v in model.trainable_weights)
    plan = ShardedGraph(model, comm=None)  # DataParallel's bucket plan (no MPI needed)
    buckets = len(plan._buckets())
    moving = bool(plan._moving())
    k = buckets + moving
    print(f"    total {n:,} weights -> G = 4 x {n:,} = {4 * n / 1e6:.3f} MB; k = {buckets} "
          f"bucket(s){' + 1 moving-statistics all-reduce' if moving else ''} = {k}")
    return 4 * n, k


def measure(kind, model, steps):
    rng = np.random.default_rng(0)
    x, y = batch(kind, BATCH[kind], rng)
    for _ in range(3):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3, min(times) * 1e3


def table(kind, step_ms, g_bytes, k, alphas_us, backward_share):
    b0 = BATCH[kind]
    per_sample = step_ms / b0
    print(f"\n{kind}: T_c = {step_ms:.2f} ms at per-node batch {b0} "
          f"({per_sample:.3f} ms per sample), G = {g_bytes / 1e6:.3f} MB, k = {k}")
    print("| link | alpha | N | bandwidth term ms | latency term ms | T_ar ms | E | E_overlap "
          "(ideal) | E, tree latency | per-node batch for E 0.8 (global) | compression for "
          "E 0.8 at b0 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for gbps, alpha_us in zip(LINKS_GBPS, alphas_us):
        bw = gbps * 1e9 / 8  # bytes per second
        for n in NODES:
            band = 2 * (n - 1) / n * g_bytes / bw * 1e3
            lat = k * 2 * (n - 1) * alpha_us * 1e-3
            t_ar = band + lat
            e = step_ms / (step_ms + t_ar)
            e_over = step_ms / max(step_ms, (1 - backward_share) * step_ms + t_ar)
            e_tree = step_ms / (step_ms + band + k * 2 * np.log2(n) * alpha_us * 1e-3)
            b_min = max(1, int(np.ceil(4 * t_ar / per_sample)))
            room = step_ms / 4 - lat
            c = "latency-bound" if room <= 0 else \
                ("none" if band <= room else f"{band / room:.1f}x")
            print(f"| {gbps} Gb/s | {alpha_us:g} us | {n} | {band:.2f} | {lat:.2f} | "
                  f"{t_ar:.2f} | {e:.2f} | {e_over:.2f} | {e_tree:.2f} | {b_min} ({b_min * n:,}) | {c} |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--measure", type=int, default=0, metavar="STEPS",
                   help="also time STEPS training steps of each model here")
    p.add_argument("--cifar-ms", type=float, default=QUIET_MS["cifar"])
    p.add_argument("--ocr-ms", type=float, default=QUIET_MS["ocr"])
    p.add_argument("--alpha-us", default="25,2",
                   help="per-message latency on the 10 and 100 Gb/s links, microseconds")
    p.add_argument("--backward-share", type=float, default=0.5,
                   help="share of a step spent in backward (bench/mpi_allreduce.py)")
    args = p.parse_args()
    alphas = [float(a) for a in args.alpha_us.split(",")]
    step_ms = {"cifar": args.cifar_ms, "ocr": args.ocr_ms}
    models = {}
    for kind in ("cifar", "ocr"):
        models[kind] = compiled(kind)
        models[kind].train_on_batch(*batch(kind, 2, np.random.default_rng(1)))  # builds all
        if args.measure:
            med, best = measure(kind, models[kind], args.measure)
            print(f"{kind}: measured step at batch {BATCH[kind]}, {faltung.get_num_threads()} "
                  f"threads, {args.measure} steps: median {med:.2f} ms, min {best:.2f} ms "
                  f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})")
    for kind, model in models.items():
        g_bytes, k = describe(kind, model)
        table(kind, step_ms[kind], g_bytes, k, alphas, args.backward_share)
    print(f"\n(python {' '.join(sys.argv)})")


if __name__ == "__main__":
    main()
