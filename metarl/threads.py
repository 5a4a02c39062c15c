"""CPU threads that share the machine with other processes instead of fighting them for it.

Why this exists (measured on a 2-core machine, issue 14): torch's CPU ops run on a GNU OpenMP pool
whose threads *spin* at every barrier while they wait for each other. One process alone uses both
cores well (MAML-TRPO's outer step on HalfCheetahDir: 1.5 s with two threads, 3.1 s with one). Two
such processes side by side each keep two spinning threads for two cores, so a thread waiting at
a barrier burns the core the other process's thread needed: the outer step took 38.8 s instead of
the 3 s of a fair half. MuJoCo's batch pool and the samplers (one torch thread while stepping)
already share fairly; torch's pool is what fights. Making OpenMP wait passively
(``OMP_WAIT_POLICY=PASSIVE``) cures the fight but costs 20% of a lone run's outer step, and it must
be set before torch is imported, which a library cannot promise.

So the fix is the thread count: before each meta-iteration :class:`CpuShare` looks at how busy the
process's CPUs were over the last interval apart from its own work (``/proc/stat`` against the
process's own CPU time) and gives torch the cores that were left, at least one. A lone run keeps
its threads; two runs on two cores settle on one thread each, where no OpenMP barrier exists to
spin at; when one finishes, the other takes both cores back at its next iteration. A lone run
never uses more threads than torch's own default.

Where ``/proc/stat`` cannot be read (macOS, Windows) :class:`CpuShare` leaves torch's count as it
is. An explicit count (``--threads N``) always wins.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

from metarl.checks import require_positive_ints

__all__ = ["CpuShare", "CpuSnapshot", "fair_threads", "usable_cores"]


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity set where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


# Jiffies per second of /proc/stat's counters (USER_HZ; 100 on every Linux ABI in use).
_USER_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU time at one moment.

    Attributes:
        wall: monotonic wall clock in seconds.
        busy: seconds of non-idle time summed over the watched CPUs (all processes).
        own: seconds of CPU time of this process (all its threads).
    """

    wall: float
    busy: float
    own: float


def fair_threads(cores: int, others_busy: float, max_threads: int) -> int:
    """Threads to use when other processes kept ``others_busy`` of ``cores`` cores busy.

    Args:
        cores: CPUs this process may run on.
        others_busy: average number of those CPUs other processes used (0 to ``cores``).
        max_threads: the most threads wanted on an idle machine.

    Returns:
        The cores left free, rounded to the nearest whole core (a desktop's background load of
        under half a core does not cost a lone run a thread; a second run using a core does), at
        least one and at most ``max_threads``.
    """
    return max(1, min(max_threads, math.floor(cores - others_busy + 0.5)))


def _read_busy(cpus: set[int] | None) -> float | None:
    """Non-idle seconds over ``cpus`` (every CPU when None), or None without ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
        fields = [int(v) for v in rest.split()[:8]]
        busy += sum(fields) - fields[3] - fields[4]
    return busy / _USER_HZ


class CpuShare:
    """Sizes torch's CPU thread pool to the cores other processes leave free.

    Call :meth:`update` before each stretch of torch work (the training loop does it once per
    meta-iteration); it measures the interval since the previous call.

    Args:
        max_threads: the most threads to use, on an idle machine (default: torch's count when
            the share is made, which is torch's default of one per physical core unless set).
        min_interval: shortest interval worth measuring, in seconds (``/proc/stat`` counts in
            10 ms ticks).
        first_interval: the first measurement covers at least this many seconds after
            construction; a first call sooner waits out the rest, busy (a sleeping process
            would look idle to runs started at the same moment, which are measuring too).

    Example:
        >>> share = CpuShare()
        >>> for iteration in range(iterations):          # doctest: +SKIP
        ...     share.update()
        ...     agent.step(tasks)
    """

    def __init__(
        self, max_threads: int | None = None, min_interval: float = 0.3, first_interval: float = 0.3
    ) -> None:
        self.cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.cores = usable_cores()
        if max_threads is None:
            max_threads = torch.get_num_threads()
        require_positive_ints(max_threads=max_threads)
        self.max_threads = max_threads
        self.min_interval = min_interval
        self.first_interval = first_interval
        self.others_busy: float | None = None
        self._last = self.snapshot()

    @property
    def available(self) -> bool:
        """Whether the machine's CPU counters can be read here (Linux)."""
        return self._last is not None

    def snapshot(self) -> CpuSnapshot | None:
        """The CPU time now, or None where ``/proc/stat`` cannot be read."""
        busy = _read_busy(self.cpus)
        if busy is None:
            return None
        times = os.times()
        return CpuSnapshot(time.monotonic(), busy, times.user + times.system)

    def update(self) -> int:
        """Measure the interval since the last measurement and set torch's thread count from it.

        Intervals shorter than ``min_interval`` are not measured (the count stays), except the
        first, which waits until ``first_interval`` has passed; so calling this every few
        milliseconds is cheap.

        Returns:
            The thread count torch now uses.
        """
        if self._last is None:
            return torch.get_num_threads()
        since = time.monotonic() - self._last.wall
        if self.others_busy is None:
            end = time.monotonic() + self.first_interval - since
            while time.monotonic() < end:
                pass
        elif since < self.min_interval:
            return torch.get_num_threads()
        now = self.snapshot()
        if now is None:  # /proc/stat went away (e.g. a chroot); keep what we have
            return torch.get_num_threads()
        elapsed = now.wall - self._last.wall
        others = (now.busy - self._last.busy) - (now.own - self._last.own)
        self.others_busy = min(float(self.cores), max(0.0, others / elapsed))
        self._last = now
        threads = fair_threads(self.cores, self.others_busy, self.max_threads)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        return threads
