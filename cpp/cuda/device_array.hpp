// cpp/cuda/device_array.hpp — DeviceArray<Backend>: an array that lives in the backend's memory
// (a GPU's for faltung._cuda, host memory for the test harness faltung._cuda_host), so that a
// model's weights, optimizer slots and activations stay there between kernel calls.
// It owns a Buf<T> (shared: reshape and DLPack views keep it alive), a shape and a dtype
// (float32, float64; int32 for labels and pooling argmax, uint8 for dropout masks). numpy in: one upload; .numpy():
// one download; __dlpack__: a view without a copy (CuPy or PyTorch on a GPU, numpy on the host
// harness). The kernel entry points over these arrays are in bind_resident.hpp.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "dlpack.hpp"

namespace faltung::cuda::binding {

namespace py = pybind11;

enum class DType { f32, f64, i32, u8 };

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::i32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::u8; }

inline const char* dtype_name(DType d) {
  return d == DType::f32 ? "float32" : d == DType::f64 ? "float64" : d == DType::i32 ? "int32" : "uint8";
}
inline std::string dims_text(const std::vector<int64_t>& d) {
  std::string s = "(";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + (d.size() == 1 ? ",)" : ")");
}

template <class Backend>
class DeviceArray {
 public:
  template <typename T> using Buf = typename Backend::template Buf<T>;
  using Storage = std::variant<Buf<float>, Buf<double>, Buf<int32_t>, Buf<uint8_t>>;

  // Uninitialized memory of `shape` (the kernels overwrite their outputs).
  template <typename T>
  static DeviceArray empty(const std::vector<int64_t>& shape) {
    DeviceArray a(shape, dtype_of<T>());
    a.store_ = std::make_shared<Storage>(std::in_place_type<Buf<T>>, Buf<T>::alloc(a.size()));
    return a;
  }
  // One upload of a C-contiguous float32, float64, int32 or uint8 array (others: TypeError).
  static DeviceArray from_numpy(const py::array& src) {
    const py::dtype dt = src.dtype();
    if (dt.is(py::dtype::of<float>())) return upload<float>(src);
    if (dt.is(py::dtype::of<double>())) return upload<double>(src);
    if (dt.is(py::dtype::of<int32_t>())) return upload<int32_t>(src);
    if (dt.is(py::dtype::of<uint8_t>())) return upload<uint8_t>(src);
    throw py::type_error("DeviceArray: expected an array of dtype float32, float64, int32 or uint8, received dtype " +
                         std::string(py::str(dt)));
  }
  // One download into a new numpy array.
  py::array numpy() const {
    if (dtype_ == DType::f32) return download<float>();
    if (dtype_ == DType::f64) return download<double>();
    if (dtype_ == DType::i32) return download<int32_t>();
    return download<uint8_t>();
  }
  // The same memory under another shape of the same size (Flatten; no copy).
  DeviceArray reshape(std::vector<int64_t> shape) const {
    int64_t n = 1, infer = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1 && infer < 0) infer = int64_t(i);
      else if (shape[i] < 0) throw py::value_error("DeviceArray.reshape: invalid shape " + dims_text(shape));
      else n *= shape[i];
    }
    if (infer >= 0 && n > 0 && size() % n == 0) shape[size_t(infer)] = size() / n, n = size();
    if (n != size())
      throw py::value_error("DeviceArray.reshape: cannot reshape an array of shape " + dims_text(shape_) +
                            " into shape " + dims_text(shape));
    DeviceArray a = *this;
    a.shape_ = std::move(shape);
    return a;
  }

  template <typename T>
  T* data() const {
    if (dtype_ != dtype_of<T>())
      throw py::type_error(std::string("DeviceArray: expected dtype ") + dtype_name(dtype_of<T>()) +
                           ", received " + dtype_name(dtype_));
    return std::get<Buf<T>>(*store_).get();
  }
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : shape_) n *= d;
    return n;
  }
  const std::vector<int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  dlpack::DLDevice device() const { return device_; }
  // Integer arrays a kernel made (max_pool2d's argmax) carry the bound their entries are below,
  // so that a kernel indexing with them needs no download to know they are in range. -1: unknown
  // (anything uploaded from numpy).
  int64_t index_bound = -1;

  // A "dltensor" PyCapsule viewing this memory; the view keeps it alive until its deleter runs.
  py::capsule dlpack() const;

 private:
  DeviceArray(std::vector<int64_t> shape, DType dt) : shape_(std::move(shape)), dtype_(dt), device_(Backend::dl_device()) {}
  template <typename T>
  static DeviceArray upload(const py::array& src) {
    auto a = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(src);
    DeviceArray d(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()), dtype_of<T>());
    d.store_ = std::make_shared<Storage>(std::in_place_type<Buf<T>>, Buf<T>::upload(a.data(), a.size()));
    return d;
  }

  template <typename T>
  py::array download() const {
    py::array_t<T, py::array::c_style> a(std::vector<py::ssize_t>(shape_.begin(), shape_.end()));
    std::get<Buf<T>>(*store_).download(a.mutable_data(), size());
    return std::move(a);
  }

  std::shared_ptr<Storage> store_;
  std::vector<int64_t> shape_;
  DType dtype_;
  dlpack::DLDevice device_;
};

// ---- DLPack export --------------------------------------------------------------------------
// What a capsule owns: a reference to the storage (no Python object, since the consumer may call
// the deleter without the GIL), the shape and strides the DLTensor points into, the tensor.
struct DLPackContext {
  std::shared_ptr<void> keep;
  std::vector<int64_t> shape, strides;
  dlpack::DLManagedTensor tensor{};
  // How many exist (tests check that every export is freed exactly once).
  static std::atomic<int64_t>& live() {
    static std::atomic<int64_t> n{0};
    return n;
  }
  DLPackContext() { ++live(); }
  ~DLPackContext() { --live(); }
  DLPackContext(const DLPackContext&) = delete;
  DLPackContext& operator=(const DLPackContext&) = delete;
};
inline void dlpack_deleter(dlpack::DLManagedTensor* self) {
  delete static_cast<DLPackContext*>(self->manager_ctx);
}
// The capsule's destructor: a consumer renames the capsule "used_dltensor" and then owns the
// deleter call; a capsule nobody consumed frees its tensor here (the DLPack docs' pattern).
inline void dlpack_capsule_destructor(PyObject* capsule) {
  if (PyCapsule_IsValid(capsule, "used_dltensor")) return;
  PyObject *type, *value, *traceback;
  PyErr_Fetch(&type, &value, &traceback);
  auto* t = static_cast<dlpack::DLManagedTensor*>(PyCapsule_GetPointer(capsule, "dltensor"));
  if (t == nullptr)
    PyErr_WriteUnraisable(capsule);
  else if (t->deleter)
    t->deleter(t);
  PyErr_Restore(type, value, traceback);
}

template <class Backend>
py::capsule DeviceArray<Backend>::dlpack() const {
  auto ctx = std::make_unique<DLPackContext>();
  ctx->keep = store_;
  ctx->shape = shape_;
  ctx->strides.assign(shape_.size(), 1);
  for (size_t i = shape_.size(); i-- > 1;) ctx->strides[i - 1] = ctx->strides[i] * shape_[i];
  dlpack::DLTensor& t = ctx->tensor.dl_tensor;
  t.data = std::visit([](auto& b) -> void* { return b.get(); }, *store_);
  t.device = device_;
  t.ndim = int32_t(shape_.size());
  t.dtype = dtype_ == DType::f32   ? dlpack::DLDataType{dlpack::kDLFloat, 32, 1}
            : dtype_ == DType::f64 ? dlpack::DLDataType{dlpack::kDLFloat, 64, 1}
            : dtype_ == DType::i32 ? dlpack::DLDataType{dlpack::kDLInt, 32, 1}
                                   : dlpack::DLDataType{dlpack::kDLUInt, 8, 1};
  t.shape = ctx->shape.data();
  t.strides = ctx->strides.data();
  t.byte_offset = 0;
  ctx->tensor.manager_ctx = ctx.get();
  ctx->tensor.deleter = dlpack_deleter;
  PyObject* cap = PyCapsule_New(&ctx->tensor, "dltensor", dlpack_capsule_destructor);
  if (cap == nullptr) throw py::error_already_set();
  ctx.release();  // owned by the capsule (or its consumer) from here on
  return py::reinterpret_steal<py::capsule>(cap);
}

// The Python class `DeviceArray` of the module.
template <class Backend>
void bind_device_array(py::module_& m) {
  using DA = DeviceArray<Backend>;
  py::class_<DA>(m, "DeviceArray",
                 "An array in this backend's memory (see cpp/cuda/device_array.hpp). DeviceArray(a) uploads a "
                 "float32, float64, int32 or uint8 numpy array once; .numpy() downloads it; __dlpack__ views it.")
      .def(py::init([](const py::array& a, const py::object& dtype) {
             if (dtype.is_none() || a.dtype().is(py::dtype::from_args(dtype))) return DA::from_numpy(a);
             return DA::from_numpy(py::array(a.attr("astype")(dtype)));  // converted on the host first
           }),
           py::arg("array"), py::arg("dtype") = py::none())
      .def("numpy", &DA::numpy, "A numpy copy (one download).")
      .def("reshape", &DA::reshape, py::arg("shape"), "The same memory under another shape (no copy).")
      .def_property_readonly("shape", [](const DA& a) {
        py::tuple t(a.shape().size());
        for (size_t i = 0; i < a.shape().size(); ++i) t[i] = a.shape()[i];
        return t;
      })
      .def_property_readonly("dtype", [](const DA& a) { return py::dtype(dtype_name(a.dtype())); })
      .def_property_readonly("size", &DA::size)
      .def_property_readonly("ndim", [](const DA& a) { return a.shape().size(); })
      .def("__dlpack_device__", [](const DA& a) { return py::make_tuple(a.device().device_type, a.device().device_id); })
      .def("__dlpack__",
           [](const DA& a, const py::object& stream, const py::object& max_version, const py::object& dl_device,
              const py::object& copy) {
             // The kernels run on the legacy default stream; waiting for it here orders them
             // before anything the consumer's `stream` does with the view. A legacy (unversioned)
             // capsule answers any max_version, as the DLPack protocol allows.
             (void)stream, (void)max_version;
             Backend::synchronize();
             if (!copy.is_none() && copy.cast<bool>())
               throw py::buffer_error("DeviceArray.__dlpack__: copy=True is not supported; use .numpy()");
             if (!dl_device.is_none()) {
               auto d = dl_device.cast<std::pair<int32_t, int32_t>>();
               if (d.first != a.device().device_type || d.second != a.device().device_id)
                 throw py::buffer_error("DeviceArray.__dlpack__: the array lives on device (" +
                                        std::to_string(a.device().device_type) + ", " +
                                        std::to_string(a.device().device_id) + "), not on the requested one");
             }
             return a.dlpack();
           },
           py::arg("stream") = py::none(), py::kw_only(), py::arg("max_version") = py::none(),
           py::arg("dl_device") = py::none(), py::arg("copy") = py::none())
      .def_static("_live_exports", []() { return DLPackContext::live().load(); },
                  "How many DLPack exports are not freed yet (for tests).")
      .def("__repr__", [](const DA& a) {
        return "<DeviceArray shape=" + dims_text(a.shape()) + " dtype=" + dtype_name(a.dtype()) + " device=(" +
               std::to_string(a.device().device_type) + ", " + std::to_string(a.device().device_id) + ")>";
      });
}

}  // namespace faltung::cuda::binding
