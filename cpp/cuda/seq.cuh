// cpp/cuda/seq.cuh — the sequence plumbing of a device-resident model, as kernel bodies and
// launch sequences (see hd.cuh for the design): Embedding's gather and its scatter-add backward,
// the row masks of Masking and Embedding(mask_zero=True), the masked mean over time of
// GlobalAveragePooling1D, RepeatVector and its sum, Permute.
// Oracles: faltung's CPU kernels (cpp/src/embedding.cpp) and numpy (x != v, np.repeat, sum,
// np.transpose) through the CPU layers.
// N lookups, V vocabulary, D embedding size; R rows of F features; B batch, n copies.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::seq {

// Embedding: out (N,D) = table (V,D) rows idx (N), each in [0, V) (checked where uploaded).
// Thread per output element.
template <typename T>
struct Gather {
  T* out;
  const T* table;
  const int32_t* idx;
  int64_t N, D;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= N * D) return;
    out[e] = table[int64_t(idx[e / D]) * D + e % D];
  }
};

// Embedding backward: dtable (V,D), row v = the sum of the dy (N,D) rows whose index is v, in
// increasing position: order (N) lists the positions grouped by index (stably), offsets (V+1)
// where each index's group starts. Each sum is the CPU kernel's serial one, bit for bit, with no
// atomics. Thread per (v, d).
template <typename T>
struct ScatterAdd {
  T* dtable;
  const T* dy;
  const int32_t *order, *offsets;
  int64_t V, D;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= V * D) return;
    const int64_t v = e / D, d = e % D;
    T s = T(0);
    for (int64_t k = offsets[v]; k < offsets[v + 1]; ++k) s += dy[int64_t(order[k]) * D + d];
    dtable[e] = s;
  }
};

// keep (R) = 1 where any feature of x (R,F) differs from `value` (Masking's mask; with F = 1
// and value 0, Embedding(mask_zero=True)'s). Thread per row.
template <typename T>
struct KeepRows {
  uint8_t* keep;
  const T* x;
  int64_t R, F;
  T value;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t r = th.global();
    if (r >= R) return;
    uint8_t k = 0;
    for (int64_t f = 0; f < F; ++f) k |= uint8_t(x[r * F + f] != value);
    keep[r] = k;
  }
};

// out (n) = a | b: the mask of Add, Subtract, Average and Concatenate over masked inputs. Thread
// per element.
struct MaskOr {
  uint8_t* out;
  const uint8_t *a, *b;
  int64_t n;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= n) return;
    out[e] = uint8_t(a[e] | b[e]);
  }
};

// y (R,F) = x * keep[row], the product as the CPU layer takes it (Masking forward, and its
// backward with x = dy). Thread per element.
template <typename T>
struct MaskRows {
  T* y;
  const T* x;
  const uint8_t* keep;
  int64_t R, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= R * F) return;
    y[e] = x[e] * T(keep[e / F] ? 1 : 0);
  }
};

// GlobalAveragePooling1D with a mask: y (B,F) = the sum of x (B,T,F) over the kept steps (keep
// (B,T)), in increasing t, over their count (0/0 = NaN for a sample with no kept step, as the
// CPU layer and Keras). Thread per (b, f).
template <typename T>
struct MaskedMeanTime {
  T* y;
  const T* x;
  const uint8_t* keep;
  int64_t B, T_, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= B * F) return;
    const int64_t b = e / F, f = e % F;
    T s = T(0), count = T(0);
    for (int64_t t = 0; t < T_; ++t)
      if (keep[b * T_ + t]) s += x[(b * T_ + t) * F + f], count += T(1);
    y[e] = s / count;
  }
};
// Its backward: dx (B,T,F) = dy (B,F) / max(count, 1) at kept steps, 0 at masked ones.
// Thread per (b, f).
template <typename T>
struct MaskedMeanTimeBackward {
  T* dx;
  const T* dy;
  const uint8_t* keep;
  int64_t B, T_, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= B * F) return;
    const int64_t b = e / F, f = e % F;
    T count = T(0);
    for (int64_t t = 0; t < T_; ++t) count += T(keep[b * T_ + t] ? 1 : 0);
    const T g = dy[e] / (count > T(1) ? count : T(1));
    for (int64_t t = 0; t < T_; ++t) dx[(b * T_ + t) * F + f] = keep[b * T_ + t] ? g : T(0);
  }
};

// RepeatVector: out (B,n,F)[b, i] = x (B,F)[b]. Thread per output element.
template <typename T>
struct Repeat {
  T* out;
  const T* x;
  int64_t B, n, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= B * n * F) return;
    out[e] = x[e / (n * F) * F + e % F];
  }
};

// Its backward: dx (B,F) = the sum over i of dy (B,n,F)[b, i], i increasing. Thread per (b, f).
template <typename T>
struct SumMiddle {
  T* dx;
  const T* dy;
  int64_t B, n, F;
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t e = th.global();
    if (e >= B * F) return;
    const int64_t b = e / F, f = e % F;
    T s = T(0);
    for (int64_t i = 0; i < n; ++i) s += dy[(b * n + i) * F + f];
    dx[e] = s;
  }
};

// Permute: out = np.transpose(inp, perm) for rank <= kMaxRank. out_dims: out's shape;
// in_stride[k]: the stride in inp of out's axis k (inp's stride of axis perm[k]). Thread per
// output element.
constexpr int kMaxRank = 8;
template <typename T>
struct Permute {
  T* out;
  const T* inp;
  int64_t n, rank;
  int64_t out_dims[kMaxRank], in_stride[kMaxRank];
  FALTUNG_HD void operator()(Thread th) const {
    int64_t e = th.global();
    if (e >= n) return;
    const int64_t o = e;
    int64_t src = 0;
    for (int64_t k = rank - 1; k >= 0; --k) {
      src += e % out_dims[k] * in_stride[k];
      e /= out_dims[k];
    }
    out[o] = inp[src];
  }
};

template <class Exec, typename T>
void gather(Exec& ex, T* out, const T* table, const int32_t* idx, int64_t N, int64_t D, int64_t block) {
  ex.launch(cover(N * D, block), Gather<T>{out, table, idx, N, D});
}
template <class Exec, typename T>
void scatter_add(Exec& ex, T* dtable, const T* dy, const int32_t* order, const int32_t* offsets, int64_t V,
                 int64_t D, int64_t block) {
  ex.launch(cover(V * D, block), ScatterAdd<T>{dtable, dy, order, offsets, V, D});
}
template <class Exec, typename T>
void keep_rows(Exec& ex, uint8_t* keep, const T* x, int64_t R, int64_t F, T value, int64_t block) {
  ex.launch(cover(R, block), KeepRows<T>{keep, x, R, F, value});
}
template <class Exec>
void mask_or(Exec& ex, uint8_t* out, const uint8_t* a, const uint8_t* b, int64_t n, int64_t block) {
  ex.launch(cover(n, block), MaskOr{out, a, b, n});
}
template <class Exec, typename T>
void mask_rows(Exec& ex, T* y, const T* x, const uint8_t* keep, int64_t R, int64_t F, int64_t block) {
  ex.launch(cover(R * F, block), MaskRows<T>{y, x, keep, R, F});
}
template <class Exec, typename T>
void masked_mean_time(Exec& ex, T* y, const T* x, const uint8_t* keep, int64_t B, int64_t T_, int64_t F,
                      int64_t block) {
  ex.launch(cover(B * F, block), MaskedMeanTime<T>{y, x, keep, B, T_, F});
}
template <class Exec, typename T>
void masked_mean_time_backward(Exec& ex, T* dx, const T* dy, const uint8_t* keep, int64_t B, int64_t T_, int64_t F,
                               int64_t block) {
  ex.launch(cover(B * F, block), MaskedMeanTimeBackward<T>{dx, dy, keep, B, T_, F});
}
template <class Exec, typename T>
void repeat(Exec& ex, T* out, const T* x, int64_t B, int64_t n, int64_t F, int64_t block) {
  ex.launch(cover(B * n * F, block), Repeat<T>{out, x, B, n, F});
}
template <class Exec, typename T>
void sum_middle(Exec& ex, T* dx, const T* dy, int64_t B, int64_t n, int64_t F, int64_t block) {
  ex.launch(cover(B * F, block), SumMiddle<T>{dx, dy, B, n, F});
}
template <class Exec, typename T>
void permute(Exec& ex, const Permute<T>& body, int64_t block) {
  ex.launch(cover(body.n, block), body);
}

}  // namespace faltung::cuda::seq
