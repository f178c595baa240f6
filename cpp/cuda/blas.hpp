// cpp/cuda/blas.hpp — cuBLAS, found and opened at run time (dlopen), and the one place where
// faltung's row-major GEMMs become cuBLAS's column-major calls.
//
// Why dlopen and not a link: the default wheel stays CPU-only, and the CUDA build must import
// and work (falling back to its own GEMM bodies, dense.cuh / rnn_common.cuh) on a machine without
// cuBLAS; NVIDIA ships cuBLAS as a PyPI wheel (nvidia-cublas: nvidia/cu13/lib/libcublas.so.13,
// ~500 MB with cuBLASLt), so it is found the way the scipy-openblas32 wheel is, next to faltung
// on sys.path, and nothing of it is linked, so no header of it is needed either (the few
// prototypes are below; the ABI is cuBLAS's C API, stable within a major version).
//
// Search order (open()): $FALTUNG_CUBLAS when set (that file only; "0" turns cuBLAS off), then
// libcublas.so.13 in each of `dirs` (faltung._device passes <sys.path entry>/nvidia/cu13/lib and
// <entry>/nvidia/cublas/lib), then the system loader (LD_LIBRARY_PATH, ldconfig), then
// /usr/local/cuda/lib64. The version comes from cublasGetProperty, which needs no GPU.
//
// The mapping: row-major C (M,N) = op(A) op(B) is, read as column-major, C^T (N,M) =
// op(B)^T op(A)^T: the column-major call swaps the operands (and their transposes and
// leading dimensions) and M <-> N (to_col_major). ref_gemm is a plain column-major GEMM with
// BLAS's argument rules, so the host harness checks the mapping against numpy.
#pragma once
#include <dlfcn.h>
#include <link.h>

#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

namespace faltung::cuda::blas {

// C (M,N) = alpha op(A) op(B) + beta C, row-major storage: op(A)[m,k] = ta ? A[k lda + m] :
// A[m lda + k], op(B)[k,n] = tb ? B[n ldb + k] : B[k ldb + n], C[m ldc + n]. beta == 0 never
// reads C.
template <typename T>
struct RowGemm {
  bool ta, tb;
  int64_t M, N, K;
  T alpha;
  const T* A;
  int64_t lda;
  const T* B;
  int64_t ldb;
  T beta;
  T* C;
  int64_t ldc;
};

// The same product as BLAS's column-major call gemm(transa, transb, m, n, k, alpha, A, lda, B,
// ldb, beta, C, ldc): C (m,n) column-major = alpha op(A) (m,k) op(B) (k,n) + beta C.
template <typename T>
struct ColGemm {
  bool transa, transb;
  int64_t m, n, k;
  T alpha;
  const T* A;
  int64_t lda;
  const T* B;
  int64_t ldb;
  T beta;
  T* C;
  int64_t ldc;
};

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: B becomes the first operand.
template <typename T>
ColGemm<T> to_col_major(const RowGemm<T>& g) {
  return ColGemm<T>{g.tb, g.ta, g.N, g.M, g.K, g.alpha, g.B, g.ldb, g.A, g.lda, g.beta, g.C, g.ldc};
}

// A (rows, cols) operand given by its element strides (rs, cs) as BLAS's (trans, ld): column
// stride 1 is row-major storage, row stride 1 its transpose. A single row (column) may have any
// stride across rows (columns): then ld is the smallest BLAS accepts. ld < 0: neither stride is 1.
struct Operand {
  bool trans;
  int64_t ld;
};
inline Operand operand(int64_t rs, int64_t cs, int64_t rows, int64_t cols) {
  if (cs == 1) return {false, rows == 1 && rs < cols ? cols : rs};
  if (rs == 1) return {true, cols == 1 && cs < rows ? rows : cs};
  return {false, -1};
}

// BLAS's argument rules (its xerbla checks), which cuBLAS applies too, plus cuBLAS's int range:
// throws std::invalid_argument naming the first one broken.
template <typename T>
void check(const ColGemm<T>& c) {
  auto need = [](bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("column-major gemm: ") + what);
  };
  const int64_t imax = 2147483647;
  need(c.m >= 0 && c.n >= 0 && c.k >= 0, "m, n, k must be >= 0");
  need(c.m <= imax && c.n <= imax && c.k <= imax && c.lda <= imax && c.ldb <= imax && c.ldc <= imax,
       "sizes must fit in an int");
  auto at_least = [](int64_t rows) { return rows > 1 ? rows : int64_t(1); };
  need(c.lda >= at_least(c.transa ? c.k : c.m), "lda < max(1, rows of A as stored)");
  need(c.ldb >= at_least(c.transb ? c.n : c.k), "ldb < max(1, rows of B as stored)");
  need(c.ldc >= at_least(c.m), "ldc < max(1, m)");
}

// The reference: a matrix stored column-major has element (r, c) at [r + c ld]; op(A)(i,p) is
// A(p,i) when transa, A(i,p) otherwise (and the same for B).
template <typename T>
void ref_gemm(const ColGemm<T>& c) {
  check(c);
  for (int64_t j = 0; j < c.n; ++j)
    for (int64_t i = 0; i < c.m; ++i) {
      T s = 0;
      for (int64_t p = 0; p < c.k; ++p) {
        const T a = c.transa ? c.A[p + i * c.lda] : c.A[i + p * c.lda];
        const T b = c.transb ? c.B[j + p * c.ldb] : c.B[p + j * c.ldb];
        s += a * b;
      }
      T& out = c.C[i + j * c.ldc];
      out = c.alpha * s + (c.beta != T(0) ? c.beta * out : T(0));
    }
}

// cuBLAS's C API, the part faltung calls (cublas_api.h; enums as int: CUBLAS_OP_N 0, _T 1;
// status 0 is success; libraryPropertyType MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2).
using Handle = void*;
using CreateFn = int (*)(Handle*);
using DestroyFn = int (*)(Handle);
using SetStreamFn = int (*)(Handle, void*);
using GetVersionFn = int (*)(Handle, int*);
using GetPropertyFn = int (*)(int, int*);
template <typename T>
using GemmFn = int (*)(Handle, int, int, int, int, int, const T*, const T*, int, const T*, int, const T*, T*, int);
template <typename T>
using GemmStridedFn = int (*)(Handle, int, int, int, int, int, const T*, const T*, int, long long, const T*, int,
                              long long, const T*, T*, int, long long, int);

// An opened libcublas: `ok` with its path and version, or the reason it is not (error).
struct Library {
  bool ok = false;
  std::string path, version, error;
  void* dl = nullptr;
  CreateFn create = nullptr;
  SetStreamFn set_stream = nullptr;
  DestroyFn destroy = nullptr;  // on an error right after create
  GetPropertyFn get_property = nullptr;
  GemmFn<float> sgemm = nullptr;
  GemmFn<double> dgemm = nullptr;
  // resolved so that a library lacking them is refused at load; no caller yet
  GetVersionFn get_version = nullptr;
  GemmStridedFn<float> sgemm_strided = nullptr;
  GemmStridedFn<double> dgemm_strided = nullptr;
  template <typename T>
  GemmFn<T> gemm() const {
    if constexpr (sizeof(T) == sizeof(float)) return sgemm;
    else return dgemm;
  }
};

constexpr const char* kSoname = "libcublas.so.13";

// dlopen `file` (a path, or a bare name for the system loader) and resolve the entry points:
// the Library, or its error (dlerror's text, or the missing symbol).
inline Library open_file(const std::string& file) {
  Library lib;
  lib.dl = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib.dl) {
    const char* e = dlerror();
    lib.error = e ? e : (file + ": dlopen failed");
    return lib;
  }
  std::string missing;
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib.dl, name));
    if (!fn) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  sym(lib.create, "cublasCreate_v2");
  sym(lib.destroy, "cublasDestroy_v2");
  sym(lib.set_stream, "cublasSetStream_v2");
  sym(lib.get_version, "cublasGetVersion_v2");
  sym(lib.get_property, "cublasGetProperty");
  sym(lib.sgemm, "cublasSgemm_v2");
  sym(lib.dgemm, "cublasDgemm_v2");
  sym(lib.sgemm_strided, "cublasSgemmStridedBatched");
  sym(lib.dgemm_strided, "cublasDgemmStridedBatched");
  struct link_map* map = nullptr;  // the file the loader opened, also for a bare name
  lib.path = dlinfo(lib.dl, RTLD_DI_LINKMAP, &map) == 0 && map && map->l_name[0] ? map->l_name : file;
  if (!missing.empty()) {
    lib.error = lib.path + " lacks " + missing;
    dlclose(lib.dl);
    lib.dl = nullptr;
    return lib;
  }
  int v[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i)
    if (lib.get_property(i, &v[i]) != 0) v[i] = -1;
  lib.version = std::to_string(v[0]) + "." + std::to_string(v[1]) + "." + std::to_string(v[2]);
  lib.ok = true;
  return lib;
}

// The search (see the top of this file). env: $FALTUNG_CUBLAS's value or nullptr (unset).
inline Library open(const char* env, const std::vector<std::string>& dirs) {
  if (env && *env) {
    if (std::string(env) == "0") {
      Library off;
      off.error = "cuBLAS turned off by FALTUNG_CUBLAS=0";
      return off;
    }
    Library lib = open_file(env);
    if (!lib.ok) lib.error = "FALTUNG_CUBLAS=" + std::string(env) + ": " + lib.error;
    return lib;
  }
  std::vector<std::string> tried;
  for (const std::string& d : dirs) tried.push_back(d + "/" + kSoname);
  tried.push_back(kSoname);
  tried.push_back(std::string("/usr/local/cuda/lib64/") + kSoname);
  std::string errors;
  for (const std::string& f : tried) {
    Library lib = open_file(f);
    if (lib.ok) return lib;
    errors += "\n  " + lib.error;
  }
  Library none;
  none.error = std::string(kSoname) + " not found (pip install \"nvidia-cublas>=13,<14\", or set FALTUNG_CUBLAS "
               "to its path); the GEMMs run on faltung's own kernels. Tried:" + errors;
  return none;
}

// The process's cuBLAS: opened once, by the first caller (faltung._device calls load() with the
// sys.path directories when it imports faltung._cuda; a kernel reaching library() first opens
// it with $FALTUNG_CUBLAS and the system's directories only).
inline const Library& load(const std::vector<std::string>& dirs) {
  static std::once_flag once;
  static Library lib;
  std::call_once(once, [&] { lib = open(std::getenv("FALTUNG_CUBLAS"), dirs); });
  return lib;
}
inline const Library& library() { return load({}); }

// On the device (blas.cpp, in faltung._cuda only): C = op(A) op(B) through cuBLAS on `stream`,
// the current device's handle; library().ok must hold. Throws std::runtime_error naming the
// cuBLAS status on failure.
template <typename T>
void device_gemm(const RowGemm<T>& g, void* stream);

}  // namespace faltung::cuda::blas
