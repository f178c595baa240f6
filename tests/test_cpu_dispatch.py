"""OpenBLAS kernel choice made before faltung's OpenBLAS loads (faltung._cpu)."""
from faltung import _cpu

AMD_ZEN5 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
            "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512cd\n")


def test_amd_with_avx512_asks_for_skylakex_kernels():
    assert _cpu.openblas_coretype(AMD_ZEN5) == "SkylakeX"


def test_other_cpus_are_left_to_openblas():
    assert _cpu.openblas_coretype(AMD_ZEN5.replace(" avx512vl", "")) is None   # Zen 3: AVX2 only
    assert _cpu.openblas_coretype(AMD_ZEN5.replace("AuthenticAMD", "GenuineIntel")) is None
    assert _cpu.openblas_coretype("") is None


def test_a_users_choice_wins():
    env = {"OPENBLAS_CORETYPE": "Haswell"}
    _cpu.configure(env)
    assert env == {"OPENBLAS_CORETYPE": "Haswell"}
