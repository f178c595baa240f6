// Shared helpers: threads, GEMM through OpenBLAS (scipy-openblas32), workspaces.
#include "faltung/common.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <sstream>

extern "C" {
#include <cblas.h>
}

namespace faltung {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream os;
  os << "(";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) os << ",";
  os << ")";
  return os.str();
}

namespace {
[[noreturn]] void size_error(const char* op, const char* what, const std::string& expr) {
  throw std::invalid_argument(std::string(op) + ": " + what + " = " + expr + " is beyond what memory could hold (at most " +
                              std::to_string(kMaxSize) + " elements)");
}
}  // namespace

int64_t size_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxSize)
    size_error(op, what, std::to_string(a) + " * " + std::to_string(b));
  return r;
}

int64_t size_add(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r) || r > kMaxSize)
    size_error(op, what, std::to_string(a) + " + " + std::to_string(b));
  return r;
}

void set_num_threads(int n) {
  FALTUNG_CHECK(n >= 1, "set_num_threads: expected n >= 1, received " + std::to_string(n));
  omp_set_num_threads(n);
}
int get_num_threads() { return omp_get_max_threads(); }

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  scipy_cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                    beta, C, (blasint)ldc);
}
template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  scipy_cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb,
                    beta, C, (blasint)ldc);
}

template <typename T>
void parallel_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                   int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int nt = omp_in_parallel() ? 1 : get_num_threads();
  const double flops = 2.0 * M * N * K;
  if (nt <= 1 || flops < 2e6) {  // too small to be worth waking the pool
    gemm<T>(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (M >= 16 * nt || M >= N) {
    // Split rows of C: rows [m0, m1) of op(A).
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t m0 = M * t / n, m1 = M * (t + 1) / n;
      const T* A_t = ta ? A + m0 : A + m0 * lda;
      gemm<T>(ta, tb, m1 - m0, N, K, alpha, A_t, lda, B, ldb, beta, C + m0 * ldc, ldc);
    }
  } else {
    // Split columns of C: columns [n0, n1) of op(B).
#pragma omp parallel num_threads(nt)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      const int64_t n0 = N * t / n, n1 = N * (t + 1) / n;
      const T* B_t = tb ? B + n0 * ldb : B + n0;
      gemm<T>(ta, tb, M, n1 - n0, K, alpha, A, lda, B_t, ldb, beta, C + n0, ldc);
    }
  }
}
template void parallel_gemm<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                   int64_t, const float*, int64_t, float, float*, int64_t);
template void parallel_gemm<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                    int64_t, const double*, int64_t, double, double*, int64_t);

namespace {
std::atomic<int64_t> g_workspace_bytes{0};  // held by all threads' workspaces
std::atomic<int> g_largest_team{1};          // the largest team a workspace was taken in

// Workspaces start on a 64-byte boundary: a vector kernel's loads from them (packed weights,
// tiles) are then whole cache lines at AVX-512, never split across two. new T[n] gives only 16
// bytes; a large block from malloc sits 16 bytes past a page boundary, so every 64-byte load of
// it crossed a line.
constexpr std::align_val_t kWorkspaceAlign{64};
struct AlignedDelete {
  void operator()(void* p) const { ::operator delete[](p, kWorkspaceAlign); }
};

template <typename T>
struct Workspace {
  std::unique_ptr<T[], AlignedDelete> data;
  int64_t size = 0;
  T* get(int64_t n) {
    if (n > size) {
      release();  // the old contents are not kept: free them before allocating
      data.reset(static_cast<T*>(::operator new[](n * sizeof(T), kWorkspaceAlign)));
      size = n;
      g_workspace_bytes += n * int64_t(sizeof(T));
      const int team = omp_get_num_threads();
      for (int seen = g_largest_team.load(); team > seen;)
        if (g_largest_team.compare_exchange_weak(seen, team)) break;
    }
    return data.get();
  }
  void release() {
    data.reset();
    g_workspace_bytes -= size * int64_t(sizeof(T));
    size = 0;
  }
  ~Workspace() { release(); }  // at thread exit
};
thread_local Workspace<float> ws_f32[kWorkspaceSlots];
thread_local Workspace<double> ws_f64[kWorkspaceSlots];
}  // namespace

float* workspace_f32(int64_t n, WorkspaceSlot slot) {
  return ws_f32[static_cast<int>(slot)].get(std::max<int64_t>(n, 1));
}
double* workspace_f64(int64_t n, WorkspaceSlot slot) {
  return ws_f64[static_cast<int>(slot)].get(std::max<int64_t>(n, 1));
}

// Each thread frees only its own buffers, so this never touches a buffer another thread is
// using. A team as large as any that took a workspace reaches the same pool threads again
// (libgomp numbers a master thread's pool threads in order).
void release_workspaces() {
  const int nt = std::max(get_num_threads(), g_largest_team.load());
#pragma omp parallel num_threads(nt)
  {
    for (auto& w : ws_f32) w.release();
    for (auto& w : ws_f64) w.release();
  }
}

int64_t workspace_bytes() { return g_workspace_bytes.load(); }

}  // namespace faltung
