"""faltung bounds libgomp's idle spin (GOMP_SPINCOUNT) unless the user chose a policy."""
import os
import subprocess
import sys

import pytest

SHOW = "import os, faltung; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"


def run(env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", SHOW], env=env, capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.mark.parametrize("env_extra,expected", [
    ({}, ["10000", "None"]),                                   # faltung's default: a short spin
    ({"OMP_WAIT_POLICY": "passive"}, ["None", "passive"]),     # the user's policy wins
    ({"GOMP_SPINCOUNT": "0"}, ["0", "None"]),                  # the user's spin count wins
])
def test_spin_default_respects_user(env_extra, expected):
    assert run(env_extra) == expected
