// Backward-filter of a 3x3 stride-1 convolution by im2col^T @ dout (the alternative to the
// Winograd-domain filter gradient in conv_winograd.cpp; chosen by winograd_set_filter_algo(1)).
//
// N batch, H/W input size, C in-channels, K filters, OH/OW output size, R pixel rows per block.
// Rows are the N*OH*OW output pixels; the im2col row of a pixel is its 3x3xC input patch in
// weight order (kh, kw, c), so dweight (9C, K) = sum over rows of col^T (9C,R) @ dout (R,K).
// Each thread accumulates its own partial (9C,K); the partials are summed at the end.
// Workspaces (common.hpp): WinogradScratch (partials of threads > 0), WinogradTiles (im2col block).
#include <omp.h>

#include <algorithm>

#include "faltung/common.hpp"
#include "faltung/conv_shape.hpp"

namespace faltung {

// dout (N,OH,OW,K), inp (N,H,W,C) -> dweight (3,3,C,K). Overwrites dweight.
template <class T>
void winograd_filter_im2col(T* dweight, const T* dout, const T* inp, const Conv2dShape& s) {
  const int64_t H = s.H, W = s.W, C = s.C, K = s.K, OH = s.OH, OW = s.OW;
  const int64_t rows = s.N * OH * OW, C9 = 9 * C;
  const int nt = std::min(get_num_threads(), 64);
  const int64_t R = std::max<int64_t>(64, std::min<int64_t>(1024, (512 * 1024) / (C9 * (int64_t)sizeof(T))));
  const int64_t nblocks = (rows + R - 1) / R;
  T* parts[64];
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    T* part = tid == 0 ? dweight : workspace<T>(C9 * K, WorkspaceSlot::WinogradScratch);
    parts[tid] = part;
    std::fill(part, part + C9 * K, T(0));
    T* col = workspace<T>(R * C9, WorkspaceSlot::WinogradTiles);
    // static: each thread sums a fixed range of blocks, so dweight is the same on every run
#pragma omp for schedule(static)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t r0 = blk * R, nr = std::min(R, rows - r0);
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t r = r0 + i, n = r / (OH * OW), oh = (r / OW) % OH, ow = r % OW;
        T* c_row = col + i * C9;
        for (int64_t kh = 0; kh < 3; ++kh)
          for (int64_t kw = 0; kw < 3; ++kw) {
            const int64_t ih = oh - s.pad_top + kh, iw = ow - s.pad_left + kw;
            T* dst = c_row + (kh * 3 + kw) * C;
            if (ih < 0 || ih >= H || iw < 0 || iw >= W)
              std::fill(dst, dst + C, T(0));
            else
              std::copy(inp + ((n * H + ih) * W + iw) * C, inp + ((n * H + ih) * W + iw + 1) * C, dst);
          }
      }
      gemm<T>(true, false, C9, K, nr, T(1), col, C9, dout + r0 * K, K, T(1), part, K);
    }
    const int nth = omp_get_num_threads();
#pragma omp for schedule(static)
    for (int64_t e = 0; e < C9 * K; ++e) {
      T acc = parts[0][e];
      for (int j = 1; j < nth; ++j) acc += parts[j][e];
      parts[0][e] = acc;
    }
  }
}

template void winograd_filter_im2col<float>(float*, const float*, const float*, const Conv2dShape&);
template void winograd_filter_im2col<double>(double*, const double*, const double*, const Conv2dShape&);

}  // namespace faltung
