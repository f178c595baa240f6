"""OpenBLAS kernel choice made before faltung's OpenBLAS loads (faltung._cpu)."""
import os
import shutil
import subprocess
import sys

import pytest

from faltung import _cpu, _cpuid

AMD_ZEN5 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\n"
            "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512cd\n")
ALL = ["baseline", "avx2", "avx512"]


def test_amd_with_avx512_asks_for_skylakex_kernels():
    assert _cpu.openblas_coretype(AMD_ZEN5) == "SkylakeX"


def test_other_cpus_are_left_to_openblas():
    assert _cpu.openblas_coretype(AMD_ZEN5.replace(" avx512vl", "")) is None   # Zen 3: AVX2 only
    assert _cpu.openblas_coretype(AMD_ZEN5.replace("AuthenticAMD", "GenuineIntel")) is None
    assert _cpu.openblas_coretype("") is None


def test_a_users_choice_wins():
    for cap in (None, "avx2", "baseline"):
        env = {"OPENBLAS_CORETYPE": "Haswell"} if cap is None else {"OPENBLAS_CORETYPE": "Haswell", "FALTUNG_CPU": cap}
        before = dict(env)
        _cpu.configure(env, ALL)
        assert env == before


def test_a_cap_below_the_cpu_caps_openblas():
    assert _cpu.capped_coretype("avx2", ALL) == "Haswell"
    assert _cpu.capped_coretype("baseline", ALL) == "Nehalem"
    assert _cpu.capped_coretype("baseline", ALL[:2]) == "Nehalem"
    env = {"FALTUNG_CPU": "avx2"}
    _cpu.configure(env, ALL)
    assert env["OPENBLAS_CORETYPE"] == "Haswell"


def test_a_cap_that_does_not_lower_the_level_changes_nothing():
    assert _cpu.capped_coretype("avx2", ALL[:2]) is None      # an AVX2 CPU: OpenBLAS decides
    assert _cpu.capped_coretype("avx512", ALL) is None
    assert _cpu.capped_coretype("avx2", ["baseline"]) is None  # never ask for kernels the CPU lacks
    assert _cpu.capped_coretype("baseline", ["baseline"]) is None
    assert _cpu.capped_coretype("bogus", ALL) is None          # faltung._core raises for it
    assert _cpu.capped_coretype(None, ALL) is None
    env = {"FALTUNG_CPU": "avx2"}
    _cpu.configure(env, ["baseline"])
    assert env == {"FALTUNG_CPU": "avx2"}


def test_configure_returns_its_choice_and_forget_removes_only_it():
    env = {"FALTUNG_CPU": "baseline"}
    core = _cpu.configure(env, ALL)
    assert core == "Nehalem" and env["OPENBLAS_CORETYPE"] == "Nehalem"
    _cpu.forget(env, core)
    assert "OPENBLAS_CORETYPE" not in env
    env = {"OPENBLAS_CORETYPE": "Haswell", "FALTUNG_CPU": "baseline"}  # a user's value
    core = _cpu.configure(env, ALL)
    _cpu.forget(env, core)
    assert core is None and env["OPENBLAS_CORETYPE"] == "Haswell"


def test_the_amd_rule_under_a_cap_and_under_an_emulator():
    def choose(levels, **env):
        env = {k: v for k, v in env.items() if v is not None}
        _cpu.configure(env, levels, cpuinfo=AMD_ZEN5)
        return env.get("OPENBLAS_CORETYPE")
    assert choose(ALL) == "SkylakeX"
    assert choose(ALL, FALTUNG_CPU="") == "SkylakeX"       # empty: no cap
    assert choose(ALL, FALTUNG_CPU="avx512") == "SkylakeX"
    assert choose(ALL, FALTUNG_CPU="avx2") == "Haswell"    # the cap, not the AMD rule
    assert choose(ALL, FALTUNG_CPU="baseline") == "Nehalem"
    # under qemu -cpu Nehalem /proc/cpuinfo is an AVX-512 host's, cpuid says baseline: nothing
    assert choose(["baseline"]) is None
    assert choose(["baseline", "avx2"]) is None           # an AVX2 CPU: OpenBLAS decides


def test_a_child_process_does_not_inherit_faltungs_choice():
    """A capped faltung process's children choose under their own FALTUNG_CPU (OpenBLAS read
    faltung's OPENBLAS_CORETYPE when it loaded; faltung removed it after), a user's value stays."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "FALTUNG_CPU")}
    script = "import os, faltung; print(os.environ.get('OPENBLAS_CORETYPE'))"
    out = subprocess.run([sys.executable, "-c", script], env=dict(env, FALTUNG_CPU="baseline"),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None"]
    out = subprocess.run([sys.executable, "-c", script], env=dict(env, FALTUNG_CPU="baseline", OPENBLAS_CORETYPE="Haswell"),
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["Haswell"]


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump (Debian binutils) is not installed")
def test_cpuid_module_loads_neither_openblas_nor_openmp():
    """faltung._cpuid runs before OpenBLAS may load: it must not pull OpenBLAS (or OpenMP) in."""
    out = subprocess.run(["objdump", "-p", _cpuid.__file__], capture_output=True, text=True, check=True).stdout
    needed = [line.split()[-1] for line in out.splitlines() if line.strip().startswith("NEEDED")]
    assert needed and not [n for n in needed if "openblas" in n or "gomp" in n or "omp" in n], needed


def test_cpuid_levels_are_what_the_core_dispatches_on():
    from faltung import _core
    levels = _cpuid.levels()
    assert levels[0] == "baseline" and levels == [lv for lv in ALL if lv in levels]
    assert tuple(levels) == _core.SUPPORTED


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="no /proc/cpuinfo (not Linux)")
def test_cpuid_levels_agree_with_the_kernels_flags():
    """cpuid's levels against /proc/cpuinfo: a level it reports needs that level's instruction
    sets in the flags (one way only: under an emulator the flags are the host's, a superset)."""
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.partition(":")[2].split())
                break
    if not flags:
        pytest.skip("/proc/cpuinfo lists no flags (not x86)")
    needs = {"avx2": {"avx", "avx2", "fma", "bmi1", "bmi2", "movbe"},
             "avx512": {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}}
    for level in _cpuid.levels()[1:]:
        assert needs[level] <= flags, (level, needs[level] - flags)


@pytest.mark.skipif(len(_cpuid.levels()) < 2, reason="this CPU runs only the baseline level")
def test_capped_process_runs_the_capped_openblas():
    """In a fresh process (OpenBLAS chooses once, when it loads), FALTUNG_CPU below the CPU's
    level gives OpenBLAS's kernels for that level."""
    from faltung import _core
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "FALTUNG_CPU")}
    for cap, core in (("baseline", "Nehalem"), ("avx2", "Haswell"))[:len(_cpuid.levels()) - 1]:
        out = subprocess.run([sys.executable, "-c", "import faltung; i = faltung.build_info(); "
                              "print(i['cpu_level'], i['blas_core'])"],
                             env=dict(env, FALTUNG_CPU=cap), capture_output=True, text=True, check=True).stdout
        # faltung's own level: the best one built up to the cap (a build may leave avx2 out)
        assert out.split() == [_core._capped_level(cap), core]
