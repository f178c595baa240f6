// Linked into the Python modules only for the manylinux wheel (-DFALTUNG_MANYLINUX=ON, set by
// tools/build_wheel.sh). A manylinux_2_28 wheel may use no glibc symbol version newer than 2.28,
// but it is built here on a newer glibc (Debian 12: 2.36), and the linker binds every call to the
// newest version of a symbol: exp and log to GLIBC_2.29, pthread_once to GLIBC_2.34, ...
// (a manylinux build image avoids this by having an old glibc). So:
//  - the link sends those references to __wrap_<name> (-Wl,--wrap=<name>), defined below as calls
//    of the older version that every glibc still exports (same function; exp@GLIBC_2.2.5 only
//    adds the old errno handling);
//  - two symbols that the static libstdc++ uses have no older version, so the module defines its
//    own (local: the modules export nothing but PyInit_*):
//      __libc_single_threaded (2.32), libstdc++'s "atomics may be skipped" flag: 0, never skip;
//      arc4random (2.36), std::random_device's entropy source: getentropy (2.25) instead;
//  - libgcc stays a shared library (libgcc_s, allowed by manylinux): its static unwinder would
//    need _dl_find_object (2.35).
// auditwheel show (tools/build_wheel.sh runs it) fails the build if any newer version remains.
#include <cstdint>
#include <cstdlib>
#include <pthread.h>
#include <unistd.h>

extern "C" {

double faltung_glibc_exp(double);
double faltung_glibc_log(double);
int faltung_glibc_pthread_once(pthread_once_t*, void (*)(void));
int faltung_glibc_pthread_key_create(pthread_key_t*, void (*)(void*));
__asm__(".symver faltung_glibc_exp, exp@GLIBC_2.2.5");
__asm__(".symver faltung_glibc_log, log@GLIBC_2.2.5");
__asm__(".symver faltung_glibc_pthread_once, pthread_once@GLIBC_2.2.5");
__asm__(".symver faltung_glibc_pthread_key_create, __pthread_key_create@GLIBC_2.2.5");

double __wrap_exp(double x) { return faltung_glibc_exp(x); }
double __wrap_log(double x) { return faltung_glibc_log(x); }
int __wrap_pthread_once(pthread_once_t* once, void (*init)(void)) {
  return faltung_glibc_pthread_once(once, init);
}
int __wrap___pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
  return faltung_glibc_pthread_key_create(key, destructor);
}

char __libc_single_threaded = 0;

uint32_t arc4random(void) {
  uint32_t value;
  if (getentropy(&value, sizeof value) != 0) std::abort();  // arc4random cannot fail
  return value;
}

}  // extern "C"
