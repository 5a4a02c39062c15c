"""Several training runs at once against the same runs one after the other, on this machine.

    python scripts/bench_side_by_side.py --runs 2 3          # Particles2D, 10 iterations
    python scripts/bench_side_by_side.py --runs 2 3 --iterations 5 -- \\
        --config configs/maml-trpo/halfcheetah-dir.toml --eval-every 0

Each run is ``scripts/train.py --seed i --eval-tasks 0`` plus the arguments after ``--``, started
as its own process exactly as a user would (``for s in 0 1; do python scripts/train.py --seed $s &
done``). Prints the wall time of the runs one after the other (each run timed alone) and side by
side, and their ratio: 1.0 means the runs shared the cores perfectly. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from metarl.cli import add_dataclass_arguments, dataclass_from_args

TRAIN = Path(__file__).resolve().parent / "train.py"


@dataclasses.dataclass
class BenchConfig:
    """Side-by-side benchmark settings.

    Attributes:
        runs: numbers of runs to start at once (each compared with the same runs in turn).
        iterations: meta-iterations per run.
        threads: passed to train.py as --threads (0: its default, the fair share).
    """

    runs: tuple[int, ...] = (2, 3)
    iterations: int = 10
    threads: int = 0


def command(seed: int, cfg: BenchConfig, out: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        str(TRAIN),
        "--seed",
        str(seed),
        "--iterations",
        str(cfg.iterations),
        "--eval-tasks",
        "0",
        "--threads",
        str(cfg.threads),
        "--out",
        out,
        *extra,
    ]


def run_at_once(commands: list[list[str]]) -> float:
    """Start every command together; wall seconds until the last one ends."""
    logs = [tempfile.TemporaryFile() for _ in commands]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=log)
        for c, log in zip(commands, logs, strict=True)
    ]
    codes = [proc.wait() for proc in procs]
    seconds = time.perf_counter() - start
    for code, log in zip(codes, logs, strict=True):
        log.seek(0)
        err = log.read().decode()
        log.close()
        if code:
            raise SystemExit(f"error: a run failed:\n{err[-2000:]}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        extra = argv[argv.index("--") + 1 :]
        argv = argv[: argv.index("--")]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_dataclass_arguments(parser, BenchConfig, "benchmark")
    cfg = dataclass_from_args(BenchConfig, parser.parse_args(argv))
    with tempfile.TemporaryDirectory() as out:
        most = max(cfg.runs)
        alone = [run_at_once([command(s, cfg, out, extra)]) for s in range(most)]
        print(f"one run alone: {', '.join(f'{t:.1f}' for t in alone)} s (seeds 0..{most - 1})")
        for n in cfg.runs:
            together = run_at_once([command(s, cfg, out, extra) for s in range(n)])
            in_turn = sum(alone[:n])
            print(
                f"{n} runs: one after the other {in_turn:.1f} s, side by side {together:.1f} s, "
                f"ratio {together / in_turn:.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
