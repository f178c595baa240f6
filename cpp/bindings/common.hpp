// Binding helpers shared by every kernel family: array aliases, shape checks, errors.
// Bindings check shapes and dtypes, allocate outputs with the GIL held, and release the
// GIL only around the kernel call.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <new>
#include <string>
#include <vector>

#include "faltung/common.hpp"

namespace faltung::py_binding {
namespace py = pybind11;

// C-contiguous arrays; forcecast copies other dtypes / layouts (the ops layer passes
// float32 C-contiguous arrays, so the hot path does not copy).
template <typename T>
using Arr = py::array_t<T, py::array::c_style | py::array::forcecast>;

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// Raises ValueError "<op>: expected <what> of rank R, received shape (...)".
inline void check_rank(const py::array& a, int rank, const std::string& op, const std::string& what) {
  if (a.ndim() != rank)
    throw py::value_error(op + ": expected `" + what + "` of rank " + std::to_string(rank) +
                          ", received shape " + shape_str(shape_of(a)));
}

// Raises ValueError unless a.shape == expected.
inline void check_shape(const py::array& a, const std::vector<int64_t>& expected, const std::string& op,
                        const std::string& what) {
  if (shape_of(a) != expected)
    throw py::value_error(op + ": expected `" + what + "` of shape " + shape_str(expected) +
                          ", received shape " + shape_str(shape_of(a)));
}

// The calling thread's buffer of at least n elements for the families that take one workspace
// per call (CTC, RNN: DESIGN.md): grown to the size the kernel states, then reused by the next
// calls, since a training loop calls with the same shapes every step and a fresh buffer per
// call cost its page faults each time (a Keras seq2seq epoch: 450,000 faults, 0.5 s of 2.1 s).
// Contents unspecified; freed at thread exit. One buffer per element type: a caller must not
// hold it across a call to another kernel that takes the same type's buffer.
template <typename T>
T* call_buffer(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// A new C-contiguous array of the given shape (uninitialized), on a 64-byte boundary: numpy's
// own large blocks start 16 bytes past one, so the next kernel's whole-vector loads of this
// result at AVX-512 would each span two cache lines. The array owns its memory (a capsule
// frees it with the matching aligned delete).
template <typename T>
Arr<T> empty(const std::vector<int64_t>& shape) {
  int64_t n = 1;  // refuse before allocating what memory could not hold (or int64 wraps)
  for (int64_t d : shape) n = size_mul(n, d, "allocation", "the result's element count");
  constexpr std::align_val_t align{64};
  void* p = ::operator new[](static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T), align);
  py::capsule owner(p, [](void* q) { ::operator delete[](q, std::align_val_t{64}); });
  return Arr<T>(std::vector<py::ssize_t>(shape.begin(), shape.end()), static_cast<T*>(p), owner);
}

// Registration of each family's functions; defined in cpp/bindings/<family>.cpp.
void bind_dense(py::module_& m);
void bind_activations(py::module_& m);
void bind_conv(py::module_& m);
void bind_conv_transpose(py::module_& m);
void bind_pooling(py::module_& m);
void bind_normalization(py::module_& m);
void bind_resampling(py::module_& m);
void bind_conv_winograd(py::module_& m);
void bind_optim(py::module_& m);
void bind_embedding(py::module_& m);

}  // namespace faltung::py_binding
