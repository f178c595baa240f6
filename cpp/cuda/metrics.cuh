// cpp/cuda/metrics.cuh — the compiled metrics a device-resident model reduces on the device
// (faltung.models.resident_metrics), and the mean of a loss's per-row values: each batch gives
// two sums per metric, sum_r v_r w_r and sum_r c_r w_r, which are what faltung.metrics.Mean adds
// to its `total` and `count`, so that only those two numbers leave the device, never the
// predictions. Oracles: faltung/metrics.py (sparse_categorical_accuracy, categorical_accuracy,
// binary_accuracy, mean_squared_error, mean_absolute_error; argmax as numpy's: the first
// maximum, a NaN wins).
// R rows (the samples, or every position of a sequence output), K the last axis, S partial sums.
#pragma once
#include <cstdint>

#include "hd.cuh"

namespace faltung::cuda::metric {

// value: pred is a (R,) vector of values (a loss's per-row values), v_r = pred[r], c_r = 1;
// sparse_accuracy: v_r = labels[r] == argmax(pred_r); categorical_accuracy: argmax(target_r) ==
// argmax(pred_r); binary_accuracy: v_r = #k with (pred > threshold) == target, c_r = K (Keras
// counts each element); mse, mae: v_r = mean_k d^2, mean_k |d| with d = pred - target.
enum class Kind : int32_t { value, sparse_accuracy, categorical_accuracy, binary_accuracy, mse, mae };

template <typename T>
FALTUNG_HD inline int64_t row_argmax(const T* p, int64_t K) {
  int64_t best = 0;
  for (int64_t k = 1; k < K; ++k) {
    if (p[best] != p[best]) break;  // a NaN is the maximum, as numpy's argmax
    if (p[k] > p[best] || p[k] != p[k]) best = k;
  }
  return best;
}

// pred (R,K), target (R,K) or labels (R) int32 (sparse_accuracy), weight (R) or null ->
// part[j] = sum of v_r w_r, part[S + j] = sum of c_r w_r over rows r = j, j + S, ... (coalesced).
template <typename T>
struct RowStats {
  double* part;
  const T *pred, *target;
  const int32_t* labels;
  const T* weight;
  T threshold;
  int64_t R, K, S;
  Kind kind;

  FALTUNG_HD double value(int64_t r) const {
    const T* p = pred + r * K;
    const T* t = target ? target + r * K : nullptr;
    switch (kind) {
      case Kind::value: return double(p[0]);
      case Kind::sparse_accuracy: return labels[r] == row_argmax(p, K) ? 1.0 : 0.0;
      case Kind::categorical_accuracy: return row_argmax(t, K) == row_argmax(p, K) ? 1.0 : 0.0;
      case Kind::binary_accuracy: {
        double hits = 0;
        for (int64_t k = 0; k < K; ++k) hits += (p[k] > threshold ? T(1) : T(0)) == t[k] ? 1.0 : 0.0;
        return hits;
      }
      case Kind::mse:
      case Kind::mae: {
        T acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T d = p[k] - t[k];
          acc += kind == Kind::mse ? d * d : (d < T(0) ? -d : d);
        }
        return double(acc / T(K));
      }
    }
    return 0.0;
  }
  FALTUNG_HD void operator()(Thread th) const {
    const int64_t j = th.global();
    if (j >= S) return;
    const double c = kind == Kind::binary_accuracy ? double(K) : 1.0;
    double v = 0, n = 0;
    for (int64_t r = j; r < R; r += S) {
      const double w = weight ? double(weight[r]) : 1.0;
      v += value(r) * w;
      n += c * w;
    }
    part[j] = v;
    part[S + j] = n;
  }
};
// out[0] = sum of part[0..S), out[1] = sum of part[S..2S) (one thread).
struct SumPairs {
  double* out;
  const double* part;
  int64_t S;
  FALTUNG_HD void operator()(Thread th) const {
    if (th.global() != 0) return;
    double v = 0, n = 0;
    for (int64_t j = 0; j < S; ++j) v += part[j], n += part[S + j];
    out[0] = v;
    out[1] = n;
  }
};
inline int64_t stats_parts(int64_t R) { return R < 1024 ? (R > 0 ? R : 1) : 1024; }

// out[0..2) = (sum v_r w_r, sum c_r w_r) of body's rows; body.part holds 2 stats_parts(R) doubles.
template <class Exec, typename T>
void row_stats(Exec& ex, double* out, const RowStats<T>& body, int64_t block) {
  ex.launch(cover(body.S, block), body);
  ex.launch(Geometry{1, 1}, SumPairs{out, body.part, body.S});
}

}  // namespace faltung::cuda::metric
