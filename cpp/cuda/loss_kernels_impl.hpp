// cpp/cuda/loss_kernels_impl.hpp — the definitions of LossKernels<Exec> (loss_kernels.hpp),
// included where Exec is complete: host_harness.cpp (HostExec) and losses.cu (DeviceExec).
#pragma once
#include "loss_kernels.hpp"

namespace faltung::cuda {

template <class Exec> template <typename T>
void LossKernels<Exec>::row_loss(const loss::RowLoss<T>& body, int64_t block) {
  Exec ex;
  loss::row_loss(ex, body, block);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::copy(T* dst, const T* src, int64_t n, int64_t block) {
  Exec ex;
  loss::copy(ex, dst, src, n, block);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::add(T* y, const T* a, const T* b, int64_t n, int64_t block) {
  Exec ex;
  loss::add(ex, y, a, b, n, block);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::sum_squares(T* out, T* part, const T* x, int64_t n, int64_t block) {
  Exec ex;
  loss::sum_squares(ex, out, part, x, n, block);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::norm_factor(T* factor, const T* sumsq, int64_t m, T c, bool global) {
  Exec ex;
  loss::norm_factor(ex, factor, sumsq, m, c, global);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::scale_by(T* x, const T* factor, int64_t n, int64_t block) {
  Exec ex;
  loss::scale_by(ex, x, factor, n, block);
}
template <class Exec> template <typename T>
void LossKernels<Exec>::clip_value(T* x, T c, int64_t n, int64_t block) {
  Exec ex;
  loss::clip_value(ex, x, c, n, block);
}

#define FALTUNG_CUDA_INSTANTIATE_LOSSES(Exec, T)                                           \
  template void LossKernels<Exec>::row_loss<T>(const loss::RowLoss<T>&, int64_t);          \
  template void LossKernels<Exec>::copy<T>(T*, const T*, int64_t, int64_t);                \
  template void LossKernels<Exec>::add<T>(T*, const T*, const T*, int64_t, int64_t);       \
  template void LossKernels<Exec>::sum_squares<T>(T*, T*, const T*, int64_t, int64_t);     \
  template void LossKernels<Exec>::norm_factor<T>(T*, const T*, int64_t, T, bool);         \
  template void LossKernels<Exec>::scale_by<T>(T*, const T*, int64_t, int64_t);            \
  template void LossKernels<Exec>::clip_value<T>(T*, T, int64_t, int64_t);

}  // namespace faltung::cuda
