// Dilated 3x3 stride-1 convolution as d_h*d_w dilation-1 Winograd convolutions on phase
// sub-images (the math and layouts are in conv_phased.hpp).
//
// N batch, H/W input size, C in-channels, K filters, OH/OW output size, dh/dw dilations,
// OHs/OWs phase output size, Hs <= OHs+2 / Ws <= OWs+2 stored phase input size, Np = N*dh*dw.
// Phase buffers live in the calling thread's workspaces (common.hpp): PhaseInput (Np,Hs,Ws,C),
// PhaseOutput (Np,OHs,OWs,K), PhaseGradOutput (Np,OHs,OWs,K), PhaseGradInput (Np,Hs,Ws,C). The
// Winograd kernels called in between take only the Winograd slots.
#include "faltung/conv_phased.hpp"

#include <algorithm>
#include <cstring>

#include "faltung/common.hpp"
#include "faltung/conv.hpp"
#include "faltung/conv_winograd.hpp"

namespace faltung {

namespace {

// Per spatial dim (H, OH, dilation d, pad): the phase image row j reads input row
// r - pad + d*j, so rows j < floor(pad/d) or j > floor((H-1+pad)/d) are zero for every phase r.
// The phase batch stores only the rows in between, Hs of them from j0 = floor(pad/d) on, and
// the inner conv sees the dropped rows as its zero padding (pad j0 <= 2 in front, the rest
// behind). For "same" padding (pad = d) that makes Hs = OHs: the inner conv is a "same" conv
// on OHs-row images, with no all-zero rows to gather, transform, or compute gradients for.
// The gather/scatter offset is then pad - d*j0 = pad % d.
struct PhaseDim {
  int64_t out, in, pad, off;  // OHs, Hs, j0, pad % d
};
PhaseDim phase_dim(int64_t H, int64_t OH, int64_t d, int64_t pad) {
  const int64_t out = (OH + d - 1) / d, j0 = pad / d;
  const int64_t j1 = std::min(out + 1, (H - 1 + pad) / d);  // out + 1: last row any output reads
  return PhaseDim{out, j1 - j0 + 1, j0, pad % d};
}

// The dilation-1 3x3 conv that every phase image goes through, all phases as one batch.
Conv2dShape phase_shape(const Conv2dShape& s, const PhaseDim& ph, const PhaseDim& pw) {
  return Conv2dShape{s.N * s.dil_h * s.dil_w, ph.in, pw.in, s.C, s.K, s.KH, s.KW,
                     ph.out, pw.out, 1, 1, 1, 1, ph.pad, pw.pad, 1};
}

// img (N,H,W,L) -> ph (N*dh*dw, Hs, Ws, L):
//   ph[(n*dh + rh)*dw + rw, j, jw] = img[n, rh - off_h + dh*j, rw - off_w + dw*jw], 0 outside.
// Used on the input (off = pad % d, Hs/Ws the phase input size) and on dout (off = 0,
// Hs/Ws the phase output size, so rows past OH/OW become zeros).
template <class T>
void gather_phases(T* ph, const T* img, int64_t N, int64_t H, int64_t W, int64_t L, int64_t dh,
                   int64_t dw, int64_t off_h, int64_t off_w, int64_t Hs, int64_t Ws, int nt) {
  const int64_t rows = N * dh * dw * Hs;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = r / Hs, j = r % Hs, n = b / (dh * dw), rh = (b / dw) % dh, rw = b % dw;
    const int64_t ih = rh - off_h + dh * j;
    T* dst = ph + r * Ws * L;
    if (ih < 0 || ih >= H) {
      std::fill(dst, dst + Ws * L, T(0));
      continue;
    }
    const T* src = img + (n * H + ih) * W * L;
    for (int64_t jw = 0; jw < Ws; ++jw) {
      const int64_t iw = rw - off_w + dw * jw;
      if (iw < 0 || iw >= W)
        std::fill(dst + jw * L, dst + (jw + 1) * L, T(0));
      else
        std::memcpy(dst + jw * L, src + iw * L, sizeof(T) * L);
    }
  }
}

// The adjoint of gather_phases, which is also its inverse where it is defined: every image
// pixel i was read by exactly one phase entry, rh = (i + off_h) % dh, j = (i + off_h) / dh
// (same for w), or by none when j >= Hs; img gets that entry or 0. Overwrites img.
// Used to scatter the phase output into out (off = 0) and the phase dinp into dinp.
template <class T>
void scatter_phases(T* img, const T* ph, int64_t N, int64_t H, int64_t W, int64_t L, int64_t dh,
                    int64_t dw, int64_t off_h, int64_t off_w, int64_t Hs, int64_t Ws, int nt) {
  const int64_t rows = N * H;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t n = r / H, ih = r % H, rh = (ih + off_h) % dh, j = (ih + off_h) / dh;
    T* dst = img + r * W * L;
    if (j >= Hs) {
      std::fill(dst, dst + W * L, T(0));
      continue;
    }
    for (int64_t iw = 0; iw < W; ++iw) {
      const int64_t rw = (iw + off_w) % dw, jw = (iw + off_w) / dw;
      if (jw >= Ws) {
        std::fill(dst + iw * L, dst + (iw + 1) * L, T(0));
        continue;
      }
      const int64_t b = (n * dh + rh) * dw + rw;
      std::memcpy(dst + iw * L, ph + ((b * Hs + j) * Ws + jw) * L, sizeof(T) * L);
    }
  }
}

}  // namespace

bool conv_phased_applicable(const Conv2dShape& s) {
  return s.KH == 3 && s.KW == 3 && s.stride_h == 1 && s.stride_w == 1 && s.groups == 1 &&
         (s.dil_h > 1 || s.dil_w > 1);
}

template <class T>
void conv2d_phased_forward(T* out, const T* inp, const T* weight, const T* bias,
                           const Conv2dShape& s, bool relu) {
  FALTUNG_CHECK(conv_phased_applicable(s),
                "conv2d_phased_forward: needs a 3x3 kernel, strides 1, groups 1 and a dilation > 1");
  const PhaseDim ph = phase_dim(s.H, s.OH, s.dil_h, s.pad_top);
  const PhaseDim pw = phase_dim(s.W, s.OW, s.dil_w, s.pad_left);
  const Conv2dShape p = phase_shape(s, ph, pw);
  const int nt = conv_threads(s);
  T* pin = workspace<T>(p.N * p.H * p.W * p.C, WorkspaceSlot::PhaseInput);
  T* pout = workspace<T>(p.N * p.OH * p.OW * p.K, WorkspaceSlot::PhaseOutput);
  gather_phases(pin, inp, s.N, s.H, s.W, s.C, s.dil_h, s.dil_w, ph.off, pw.off, p.H, p.W, nt);
  conv2d_winograd_forward(pout, pin, weight, bias, p, relu);
  scatter_phases(out, pout, s.N, s.OH, s.OW, s.K, s.dil_h, s.dil_w, 0, 0, p.OH, p.OW, nt);
}

template <class T>
void conv2d_phased_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                            const Conv2dShape& s) {
  FALTUNG_CHECK(conv_phased_applicable(s),
                "conv2d_phased_backward: needs a 3x3 kernel, strides 1, groups 1 and a dilation > 1");
  if (!dinp && !dweight) return;
  const PhaseDim ph = phase_dim(s.H, s.OH, s.dil_h, s.pad_top);
  const PhaseDim pw = phase_dim(s.W, s.OW, s.dil_w, s.pad_left);
  const Conv2dShape p = phase_shape(s, ph, pw);
  const int nt = conv_threads(s);
  T* pdout = workspace<T>(p.N * p.OH * p.OW * p.K, WorkspaceSlot::PhaseGradOutput);
  gather_phases(pdout, dout, s.N, s.OH, s.OW, s.K, s.dil_h, s.dil_w, 0, 0, p.OH, p.OW, nt);
  if (dinp) {
    T* pdin = workspace<T>(p.N * p.H * p.W * p.C, WorkspaceSlot::PhaseGradInput);
    conv2d_winograd_backward_data(pdin, pdout, weight, p);
    scatter_phases(dinp, pdin, s.N, s.H, s.W, s.C, s.dil_h, s.dil_w, ph.off, pw.off, p.H, p.W, nt);
  }
  if (dweight) {
    T* pin = workspace<T>(p.N * p.H * p.W * p.C, WorkspaceSlot::PhaseInput);
    gather_phases(pin, inp, s.N, s.H, s.W, s.C, s.dil_h, s.dil_w, ph.off, pw.off, p.H, p.W, nt);
    conv2d_winograd_backward_filter(dweight, pdout, pin, p);
  }
}

#define FALTUNG_PHASED_INSTANTIATE(T)                                                              \
  template void conv2d_phased_forward<T>(T*, const T*, const T*, const T*, const Conv2dShape&, bool); \
  template void conv2d_phased_backward<T>(T*, T*, const T*, const T*, const T*, const Conv2dShape&);
FALTUNG_PHASED_INSTANTIATE(float)
FALTUNG_PHASED_INSTANTIATE(double)
#undef FALTUNG_PHASED_INSTANTIATE

}  // namespace faltung
