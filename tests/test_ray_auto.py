"""``--ray-address auto`` with no Ray running: one line naming the fix (own module: the Ray tests'
local cluster would be found by ``auto``, which joins any Ray running on the machine)."""

import os
import subprocess
import sys

import pytest

ray = pytest.importorskip("ray")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ray_address_auto_without_a_cluster_is_one_line_naming_the_fix(tmp_path):
    from ray._private.services import find_gcs_addresses

    if find_gcs_addresses():
        pytest.skip("a Ray cluster runs on this machine, and auto rightly joins it")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "scripts/train.py", "--sampler", "ray", "--ray-address", "auto"]
    cmd += ["--iterations", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "ray start --head" in last, proc.stderr
    assert not list(tmp_path.iterdir()), "no run folder for a run that never started"
