// The dropout keep rule, one definition for the CPU kernels (cpp/src/softmax_dropout.cpp) and
// the CUDA bodies (activations.cuh), so that a seed gives the same mask on both.
// Element i is kept iff the top 24 bits of hash(seed, i) are >= thr24 = round(rate 2^24). The
// hash works on 32-bit lanes (AVX2 has 32-bit but no 64-bit multiplies): two rounds of
// murmur3's fmix32 over (i * golden + key_lo) and key_hi; the high half of i enters the first
// round. The key comes from the seed through splitmix64's finalizer.
#pragma once
#include <cmath>
#include <cstdint>

#include "hd.cuh"

namespace faltung::dropout {

FALTUNG_HD inline uint32_t fmix32(uint32_t h) {  // a bijection
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

struct KeepRule {
  uint32_t key_lo, key_hi, thr24;
  FALTUNG_HD bool keep(int64_t i) const {
    const uint32_t c = uint32_t(i) * 0x9E3779B9u + key_lo + uint32_t(uint64_t(i) >> 32) * 0x7FEB352Du;
    return (fmix32(fmix32(c) ^ key_hi) >> 8) >= thr24;
  }
};

// Host only. rate in [0, 1] (the callers check it).
inline KeepRule keep_rule(double rate, uint64_t seed) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return KeepRule{uint32_t(z), uint32_t(z >> 32), uint32_t(std::llround(rate * 16777216.0))};
}

}  // namespace faltung::dropout
