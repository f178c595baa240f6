// cpp/cuda/seq_kernels_impl.hpp — the definitions of SeqKernels<Exec> (seq_kernels.hpp),
// included where Exec is complete: host_harness.cpp (HostExec) and seq.cu (DeviceExec).
#pragma once
#include "seq_kernels.hpp"

namespace faltung::cuda {

template <class Exec> template <typename T>
void SeqKernels<Exec>::gather(T* out, const T* table, const int32_t* idx, int64_t N, int64_t D, int64_t block) {
  Exec ex;
  seq::gather(ex, out, table, idx, N, D, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::scatter_add(T* dtable, const T* dy, const int32_t* order, const int32_t* offsets, int64_t V,
                                   int64_t D, int64_t block) {
  Exec ex;
  seq::scatter_add(ex, dtable, dy, order, offsets, V, D, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::keep_rows(uint8_t* keep, const T* x, int64_t R, int64_t F, T value, int64_t block) {
  Exec ex;
  seq::keep_rows(ex, keep, x, R, F, value, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::mask_rows(T* y, const T* x, const uint8_t* keep, int64_t R, int64_t F, int64_t block) {
  Exec ex;
  seq::mask_rows(ex, y, x, keep, R, F, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::masked_mean_time(T* y, const T* x, const uint8_t* keep, int64_t B, int64_t T_, int64_t F,
                                        int64_t block) {
  Exec ex;
  seq::masked_mean_time(ex, y, x, keep, B, T_, F, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::masked_mean_time_backward(T* dx, const T* dy, const uint8_t* keep, int64_t B, int64_t T_,
                                                 int64_t F, int64_t block) {
  Exec ex;
  seq::masked_mean_time_backward(ex, dx, dy, keep, B, T_, F, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::repeat(T* out, const T* x, int64_t B, int64_t n, int64_t F, int64_t block) {
  Exec ex;
  seq::repeat(ex, out, x, B, n, F, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::sum_middle(T* dx, const T* dy, int64_t B, int64_t n, int64_t F, int64_t block) {
  Exec ex;
  seq::sum_middle(ex, dx, dy, B, n, F, block);
}
template <class Exec> template <typename T>
void SeqKernels<Exec>::permute(const seq::Permute<T>& body, int64_t block) {
  Exec ex;
  seq::permute(ex, body, block);
}
template <class Exec>
void SeqKernels<Exec>::mask_or(uint8_t* out, const uint8_t* a, const uint8_t* b, int64_t n, int64_t block) {
  Exec ex;
  seq::mask_or(ex, out, a, b, n, block);
}
template <class Exec>
void SeqKernels<Exec>::reverse_mask(uint8_t* out, const uint8_t* inp, int64_t B, int64_t T_, int64_t block) {
  Exec ex;
  layout::reverse_time(ex, out, inp, B, T_, int64_t(1), block);
}

#define FALTUNG_CUDA_INSTANTIATE_SEQ(Exec, T)                                                                   \
  template void SeqKernels<Exec>::gather<T>(T*, const T*, const int32_t*, int64_t, int64_t, int64_t);           \
  template void SeqKernels<Exec>::scatter_add<T>(T*, const T*, const int32_t*, const int32_t*, int64_t, int64_t, \
                                                 int64_t);                                                      \
  template void SeqKernels<Exec>::keep_rows<T>(uint8_t*, const T*, int64_t, int64_t, T, int64_t);               \
  template void SeqKernels<Exec>::mask_rows<T>(T*, const T*, const uint8_t*, int64_t, int64_t, int64_t);        \
  template void SeqKernels<Exec>::masked_mean_time<T>(T*, const T*, const uint8_t*, int64_t, int64_t, int64_t,   \
                                                      int64_t);                                                 \
  template void SeqKernels<Exec>::masked_mean_time_backward<T>(T*, const T*, const uint8_t*, int64_t, int64_t,  \
                                                               int64_t, int64_t);                               \
  template void SeqKernels<Exec>::repeat<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t);                  \
  template void SeqKernels<Exec>::sum_middle<T>(T*, const T*, int64_t, int64_t, int64_t, int64_t);              \
  template void SeqKernels<Exec>::permute<T>(const seq::Permute<T>&, int64_t);
// once per executor: the int32 mask of Embedding(mask_zero=True), the mask reversal
#define FALTUNG_CUDA_INSTANTIATE_SEQ_ONCE(Exec)                                                          \
  template void SeqKernels<Exec>::keep_rows<int32_t>(uint8_t*, const int32_t*, int64_t, int64_t, int32_t, \
                                                     int64_t);                                            \
  template struct SeqKernels<Exec>;

}  // namespace faltung::cuda
