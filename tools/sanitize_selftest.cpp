// Deliberate undefined behaviour and memory errors. tools/sanitize.sh builds this with the
// same sanitizer flags as the extension, calls each function from python under the same
// LD_PRELOAD and options, and requires every call to abort with a report: proof that a
// report in the extension fails the test run instead of scrolling past.
#include <climits>
#include <cstdlib>

extern "C" int signed_overflow(int x) { return x + INT_MAX; }

extern "C" int float_cast_overflow(double x) { return static_cast<int>(x); }

extern "C" int heap_overflow(int i) {
  int* p = static_cast<int*>(std::malloc(4 * sizeof(int)));
  p[i] = 1;
  const int v = p[i];
  std::free(p);
  return v;
}
