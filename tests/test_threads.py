"""Runs side by side share the cores: torch's thread count follows what other processes use."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from scripts_helpers import run_script

from metarl.runlog import RunDir
from metarl.threads import CpuShare, fair_threads

LINUX = Path("/proc/stat").exists()
BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


@pytest.mark.parametrize(
    "cores, others, max_threads, expected",
    [
        (2, 0.0, 2, 2),  # alone
        (2, 0.4, 2, 2),  # a desktop's background load costs no thread
        (2, 0.7, 2, 1),
        (2, 1.0, 2, 1),  # a second run on two cores: one thread each
        (2, 1.33, 2, 1),  # three runs on two cores
        (2, 2.0, 2, 1),  # never fewer than one
        (16, 0.0, 8, 8),  # never more than asked for (torch's default: physical cores)
        (16, 10.0, 8, 6),
    ],
)
def test_fair_threads(cores, others, max_threads, expected):
    assert fair_threads(cores, others, max_threads) == expected


def busy_processes(count: int, seconds: float) -> list[subprocess.Popen]:
    command = [sys.executable, "-c", BUSY.format(seconds=seconds)]
    return [subprocess.Popen(command) for _ in range(count)]


@pytest.mark.skipif(not LINUX, reason="reads /proc/stat")
def test_share_sees_other_processes_but_not_its_own_work():
    before = torch.get_num_threads()
    try:
        share = CpuShare(max_threads=2, first_interval=0.5)
        procs = busy_processes(share.cores, seconds=1.5)
        time.sleep(1.0)
        assert share.update() == 1  # every core busy elsewhere: one thread, no barrier to spin at
        assert torch.get_num_threads() == 1
        assert share.others_busy > share.cores - 0.5
        for proc in procs:
            proc.wait()
        # now this process alone keeps its CPUs busy; its own time is not "others"
        time.sleep(0.5)
        share.update()
        if share.others_busy > 0.5:
            pytest.skip(f"other processes keep {share.others_busy:.1f} cores busy here")
        x = torch.randn(256, 256)
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            x = torch.tanh(x @ x / 256)
        share.update()
        assert share.others_busy < 0.75, share.others_busy
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not LINUX, reason="reads /proc/stat")
def test_short_intervals_keep_the_count_and_the_first_waits():
    share = CpuShare(max_threads=1, min_interval=0.2, first_interval=0.5)
    start = time.monotonic()
    assert share.update() == 1
    assert time.monotonic() - start >= 0.45  # the first measurement waited for a longer look
    measured = share.others_busy
    start = time.monotonic()
    share.update()
    assert time.monotonic() - start < 0.1 and share.others_busy == measured  # not re-measured


def test_bad_max_threads():
    with pytest.raises(ValueError, match="max_threads must be a positive integer"):
        CpuShare(max_threads=0)


@pytest.mark.skipif(not LINUX, reason="reads /proc/stat")
def test_train_gives_up_threads_to_other_processes_and_pinned_threads_stay(tmp_path):
    args = ["--meta-batch-size", "3", "--episodes-per-task", "3", "--horizon", "15"]
    args += ["--eval-tasks", "0", "--iterations", "3"]
    cores = CpuShare().cores
    procs = busy_processes(cores, seconds=30)
    try:
        default = run_script("train", *args, "--out", str(tmp_path / "default"))
        pinned = run_script("train", *args, "--threads", "2", "--out", str(tmp_path / "pinned"))
    finally:
        for proc in procs:
            proc.kill()
    assert default.returncode == 0, default.stderr
    assert pinned.returncode == 0, pinned.stderr
    for name, expected in (("default", {1}), ("pinned", {2})):
        (run_dir,) = (tmp_path / name).iterdir()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert {row["torch_threads"] for row in rows} == expected


def test_runs_created_at_once_get_their_own_folders(tmp_path, monkeypatch):
    # Two processes that both found the name free and then both created it: the second must move
    # on to "-2" instead of failing (runs started side by side in the same second).
    monkeypatch.setattr(time, "strftime", lambda fmt: "20260101-000000")
    monkeypatch.setattr(Path, "exists", lambda self: False)
    first = RunDir.create(tmp_path, "metarl/Particles2D-v0", "maml-trpo", {})
    second = RunDir.create(tmp_path, "metarl/Particles2D-v0", "maml-trpo", {})
    assert first.path.name == "20260101-000000-Particles2D-v0-maml-trpo"
    assert second.path.name == first.path.name + "-2"
