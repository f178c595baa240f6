// cpp/cuda/dlpack.hpp — the DLPack v0.8 ABI (github.com/dmlc/dlpack, include/dlpack/dlpack.h),
// the part faltung's device arrays export: a DLManagedTensor in a PyCapsule named "dltensor".
// Written out here (a C ABI, stable since v0.6) so that no new dependency is needed; the enum
// fields are int32_t, the size a C enum of these values has on every platform Python runs on.
#pragma once
#include <cstdint>

namespace faltung::dlpack {

constexpr int32_t kDLCPU = 1;   // DLDeviceType
constexpr int32_t kDLCUDA = 2;
constexpr uint8_t kDLInt = 0;   // DLDataTypeCode
constexpr uint8_t kDLUInt = 1;
constexpr uint8_t kDLFloat = 2;

extern "C" {
struct DLDevice {
  int32_t device_type;  // DLDeviceType
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;  // DLDataTypeCode
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; nullptr means compact row-major
  uint64_t byte_offset;
};
// The consumer calls deleter(self) once it no longer needs the memory (maybe without the GIL).
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};
}  // extern "C"

}  // namespace faltung::dlpack
