"""Roofline estimate of the CIFAR training step and the LSTM step on an A100 / H100 (issue 14).

No GPU runs here: each kernel the CUDA backend would launch is counted by its FLOPs and its
compulsory DRAM bytes (every operand read once, every result written once, float32), and
timed as max(FLOPs / peak, bytes / bandwidth) against the datasheet peaks below; the step is
the sum, plus a launch latency per kernel. Kernels whose arithmetic intensity (FLOP/byte)
lies below the ridge point (peak / bandwidth) are memory-bound. Run: python bench/roofline_cuda.py
"""
F4 = 4  # bytes per float32

# name: (FP32 FLOP/s, TF32 tensor-core FLOP/s (dense), DRAM bytes/s), SXM parts, datasheets
GPUS = {"A100-80GB": (19.5e12, 156e12, 2.039e12), "H100-SXM": (67e12, 495e12, 3.35e12)}
LAUNCH_S = 4e-6  # one kernel launch on a stream, back to back (no CUDA graph)


def gemm(name, M, N, K, gemm=True):
    """C (M,N) = A (M,K) B (K,N): 2MNK FLOPs, reads A and B, writes C."""
    return (name, 2 * M * N * K, F4 * (M * K + K * N + M * N), gemm)


def elementwise(name, n, reads, writes, flops_per=1):
    return (name, flops_per * n, F4 * n * (reads + writes), False)


def cifar_step(N=32):
    """bench/compare_torch.py's CIFAR model (Adam), one training step at batch N."""
    ks = []
    convs = [(32, 3, 32), (32, 32, 32), (16, 32, 64), (16, 64, 64), (8, 64, 128), (8, 128, 128)]
    params = 0
    for li, (S, ci, co) in enumerate(convs):
        rows, k = N * S * S, 9 * ci
        tag = f"conv{li + 1} {ci}->{co} @{S}"
        ks.append(gemm(f"{tag} fwd (implicit GEMM)", rows, co, k))
        if li:
            ks.append(gemm(f"{tag} bwd data", rows, ci, 9 * co))
        ks.append(gemm(f"{tag} bwd filter", k, co, rows))
        ks.append(elementwise(f"{tag} bias+relu fwd", rows * co, 1, 1))
        ks.append(elementwise(f"{tag} relu bwd + bias grad", rows * co, 2, 1))
        params += k * co + co
        if li % 2:
            ks.append(elementwise(f"maxpool @{S} fwd", rows * co, 1, 0.25 + 0.25))  # out + argmax
            ks.append(elementwise(f"maxpool @{S} bwd", rows * co, 0.5, 1))
    ks.append(elementwise("dropout fwd+bwd (2048)", N * 2048, 2, 2))
    for i, o in [(2048, 128), (128, 64), (64, 10)]:
        ks += [gemm(f"dense {i}->{o} fwd", N, o, i), gemm(f"dense {i}->{o} bwd data", N, i, o),
               gemm(f"dense {i}->{o} bwd weight", i, o, N)]
        params += i * o + o
    ks.append(elementwise("softmax cross-entropy", N * 10, 2, 1, 10))
    ks.append(elementwise(f"Adam update ({params} params)", params, 4, 3, 12))
    return ks


def lstm_step(B=32, T=100, F=128, U=256):
    """bench/compare_torch.py's LSTM case: forward + backward, return_sequences."""
    G = 4 * U
    ks = [gemm("input projection x W (all steps)", B * T, G, F)]
    ks += [gemm("recurrent GEMM h R (per step)", B, G, U)] * T
    ks += [elementwise("gate epilogue fwd (per step)", B * U, 6, 6, 30)] * T  # z 4U in; g 4U, c, h, hs out
    ks += [elementwise("gate epilogue bwd (per step)", B * U, 9, 6, 30)] * T
    ks += [gemm("dZ R^T (per step)", B, U, G)] * T
    ks += [gemm("dW = X^T dZ", F, G, B * T), gemm("dx = dZ W^T", B * T, F, G),
           gemm("dR = H^T dZ", U, G, B * T), elementwise("db = sum dZ", B * T * G, 1, 0)]
    return ks


def report(title, ks):
    print(f"\n{title}: {len(ks)} kernel launches, {sum(k[1] for k in ks) / 1e9:.2f} GFLOP, "
          f"{sum(k[2] for k in ks) / 1e6:.1f} MB compulsory traffic")
    for gpu, (fp32, tf32, bw) in GPUS.items():
        for label, peak in (("FP32", fp32), ("TF32", tf32)):
            t_c = t_m = 0.0
            mem_bound = {}
            for name, fl, by, is_gemm in ks:
                p = peak if is_gemm else fp32
                tc, tm = fl / p, by / bw
                if tm > tc:
                    t_m += tm
                    mem_bound[name] = mem_bound.get(name, 0) + tm
                else:
                    t_c += tc
            launch = len(ks) * LAUNCH_S
            top = sorted(mem_bound.items(), key=lambda kv: -kv[1])[:4]
            print(f"  {gpu} {label} GEMMs: compute-bound {t_c * 1e3:.3f} ms + memory-bound "
                  f"{t_m * 1e3:.3f} ms = {(t_c + t_m) * 1e3:.3f} ms; + launches {launch * 1e3:.2f} ms")
            print("    memory-bound, largest: " + "; ".join(f"{n} {t * 1e6:.1f} us" for n, t in top))


if __name__ == "__main__":
    report("CIFAR training step, batch 32", cifar_step(32))
    report("LSTM step (B 32, T 100, F 128, U 256), forward + backward", lstm_step())
