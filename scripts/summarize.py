"""Summarize finished runs (e.g. the seeds of one experiment) as one results-table row.

    python scripts/summarize.py runs/<seed0> runs/<seed1> runs/<seed2>
    python scripts/summarize.py runs/<run> --markdown
    python scripts/summarize.py runs/<a> runs/<b> --eval last-seed0   # evaluate.py's results

Reads each run's final held-out evaluation (``eval.json``, or with ``--eval NAME`` the
``eval/NAME/results.json`` that ``scripts/evaluate.py`` wrote) and its ``metrics.jsonl``, pools the
per-task returns of all runs at every adaptation step (mean and 95% CI over tasks x runs), and
prints them with the per-run means, iterations, environment steps and training wall time. Where
the env reports success (Meta-World) the per-task success rates are pooled and printed the same way.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from metarl.evaluation import confidence_interval
from metarl.runlog import RunDir, RunDirError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="finished run folders (one experiment)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table row")
    parser.add_argument(
        "--eval",
        metavar="NAME",
        help="use RUN/eval/NAME/results.json (from scripts/evaluate.py) instead of eval.json",
    )
    args = parser.parse_args(argv)
    per_run, successes, seeds, iterations, env_steps, wall = [], [], [], [], [], []
    for path in args.runs:
        try:
            run = RunDir.open(path)
        except RunDirError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        result = (
            run.path / "eval" / args.eval / "results.json" if args.eval else run.path / "eval.json"
        )
        if not result.is_file():
            what = "run scripts/evaluate.py on it" if args.eval else "the run did not finish"
            print(f"error: {run.path} has no {result.name} ({what})", file=sys.stderr)
            return 2
        summary = json.loads(result.read_text())
        per_run.append(np.array(summary["per_task_returns"]))
        success = summary.get("per_task_successes")  # envs that report success only
        successes.append(None if success is None else np.array(success))
        rows = run.metrics()
        seeds.append(run.config()["train"]["seed"])
        iterations.append(len(rows))
        env_steps.append(rows[-1]["env_steps_total"] if rows else 0)
        wall.append(sum(r["time_iteration"] for r in rows))
    if len({r.shape[0] for r in per_run}) != 1:
        print("error: the runs were evaluated with different numbers of steps", file=sys.stderr)
        return 2
    pooled = np.concatenate(per_run, axis=1)  # [steps, tasks x runs]
    cells = [f"{s.mean():.1f} ± {confidence_interval(s):.1f}" for s in pooled]
    success_cells = []
    if all(s is not None for s in successes):  # pooled like the returns
        pooled_success = np.concatenate(successes, axis=1)
        success_cells = [f"{s.mean():.2f} ± {confidence_interval(s):.2f}" for s in pooled_success]
    seeds_text = ",".join(str(s) for s in seeds)
    if args.markdown:
        print(
            f"| {' | '.join(cells + success_cells)} | {seeds_text} | {iterations[0]} | "
            f"{np.mean(env_steps) / 1e6:.1f}M | {np.mean(wall) / 60:.0f} min |"
        )
        return 0
    print(f"{len(per_run)} runs (seeds {seeds_text}), {pooled.shape[1]} task evaluations")
    for k in range(len(pooled)):
        by_run = " ".join(f"{r[k].mean():8.2f}" for r in per_run)
        print(f"  step {k}: {cells[k]:>16s}   per run: {by_run}")
    for k, cell in enumerate(success_cells):
        by_run = " ".join(f"{s[k].mean():8.2f}" for s in successes)
        print(f"  step {k} success rate: {cell:>12s}   per run: {by_run}")
    print(
        f"  iterations {iterations}, env steps {[f'{s / 1e6:.2f}M' for s in env_steps]}, "
        f"training wall {[f'{w / 60:.1f} min' for w in wall]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
