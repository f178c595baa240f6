// Affine transforms of NHWC image batches, one 2x3 matrix per image, sampled as
// scipy.ndimage.affine_transform (order 0/1) samples. N batch, H/W image size, C channels.
#include "faltung/image_transform.hpp"

#include <algorithm>
#include <cmath>

namespace faltung {

namespace {

// One axis of one sample point: the two taps (index -1 reads cval) and the weight of the
// second (0 for nearest interpolation); `outside` makes the whole point cval (Constant mode).
struct AxisTaps {
  int64_t i0, i1;
  double w1;
  bool outside;
};

// Half-sample symmetric: period 2n, index i and 2n-1-i read the same sample.
int64_t reflect_index(int64_t i, int64_t n) {
  const int64_t p = 2 * n;
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - 1 - i;
}

// Whole-sample symmetric: period 2n-2 (a one-sample axis reads its sample).
int64_t mirror_index(int64_t i, int64_t n) {
  if (n == 1) return 0;
  const int64_t p = 2 * n - 2;
  i %= p;
  if (i < 0) i += p;
  return i < n ? i : p - i;
}

int64_t wrap_index(int64_t i, int64_t n) {
  i %= n;
  return i < 0 ? i + n : i;
}

// scipy's map_coordinate for 'wrap': period n-1, coordinates inside [0, n-1] unchanged.
double wrap_coordinate(double x, int64_t n) {
  if (n <= 1) return 0.0;
  const double period = double(n - 1);
  if (x < 0) return x + period * (double(int64_t(-x / period)) + 1.0);
  if (x > period) return x - period * double(int64_t(x / period));
  return x;
}

int64_t resolve_index(int64_t i, int64_t n, FillMode mode) {
  switch (mode) {
    case FillMode::Reflect: return reflect_index(i, n);
    case FillMode::Mirror: return mirror_index(i, n);
    case FillMode::GridWrap: return wrap_index(i, n);
    case FillMode::GridConstant: return (i < 0 || i >= n) ? -1 : i;
    default: return std::clamp<int64_t>(i, 0, n - 1);  // Constant / Nearest / Wrap: x is in range
  }
}

AxisTaps axis_taps(double x, int64_t n, Interpolation interpolation, FillMode mode) {
  const double last = double(n - 1);
  if (mode == FillMode::Constant && (x < 0 || x > last)) return {0, 0, 0.0, true};
  x = std::clamp(x, -1e15, 1e15);  // far outside either way; keeps the int64_t casts defined
  if (mode == FillMode::Nearest) x = std::clamp(x, 0.0, last);
  if (mode == FillMode::Wrap) x = wrap_coordinate(x, n);
  if (interpolation == Interpolation::Nearest) {
    const int64_t i = resolve_index(int64_t(std::floor(x + 0.5)), n, mode);
    return {i, i, 0.0, false};
  }
  const double f = std::floor(x);
  const int64_t i0 = int64_t(f);
  return {resolve_index(i0, n, mode), resolve_index(i0 + 1, n, mode), x - f, false};
}

}  // namespace

// inp (N,H,W,C), matrices (N,2,3) -> out (N,H,W,C).
template <typename T>
void affine_transform_forward(T* out, const T* inp, const double* matrices, int64_t N, int64_t H, int64_t W,
                              int64_t C, Interpolation interpolation, FillMode mode, double cval) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t r = 0; r < H; ++r) {
      const double* m = matrices + n * 6;
      const T* img = inp + n * H * W * C;
      T* out_row = out + (n * H + r) * W * C;
      for (int64_t c = 0; c < W; ++c) {
        // scipy's order of summation: offset, then row term, then column term.
        double y = m[2];
        y += double(r) * m[0];
        y += double(c) * m[1];
        double x = m[5];
        x += double(r) * m[3];
        x += double(c) * m[4];
        const AxisTaps ty = axis_taps(y, H, interpolation, mode);
        const AxisTaps tx = axis_taps(x, W, interpolation, mode);
        T* o = out_row + c * C;
        if (ty.outside || tx.outside) {
          std::fill(o, o + C, T(cval));
          continue;
        }
        const int64_t rows[2] = {ty.i0, ty.i1}, cols[2] = {tx.i0, tx.i1};
        const double wy[2] = {1.0 - ty.w1, ty.w1}, wx[2] = {1.0 - tx.w1, tx.w1};
        const int taps = interpolation == Interpolation::Bilinear ? 2 : 1;
        for (int64_t ch = 0; ch < C; ++ch) {
          double acc = 0.0;
          for (int a = 0; a < taps; ++a)
            for (int b = 0; b < taps; ++b) {
              const double v = (rows[a] < 0 || cols[b] < 0) ? cval : double(img[(rows[a] * W + cols[b]) * C + ch]);
              acc += v * (wy[a] * wx[b]);
            }
          o[ch] = T(acc);
        }
      }
    }
}

template void affine_transform_forward<float>(float*, const float*, const double*, int64_t, int64_t, int64_t,
                                              int64_t, Interpolation, FillMode, double);
template void affine_transform_forward<double>(double*, const double*, const double*, int64_t, int64_t, int64_t,
                                               int64_t, Interpolation, FillMode, double);

}  // namespace faltung
