"""Plot learning curves of one or more runs.

    python scripts/plot.py runs/<run-a> runs/<run-b> --labels "MAML-TRPO" "ProMP" --out curves.png

Draws the mean return before and after adaptation against iterations and against environment
steps, one colour per run, and below it the success rate where the runs' env reports success
(Meta-World). Needs matplotlib (``pip install -e ".[viz]"``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metarl.runlog import RunDir, RunDirError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders made by scripts/train.py")
    parser.add_argument("--labels", nargs="+", help="one label per run (default: folder names)")
    parser.add_argument("--out", default=None, help="PNG file (default: <first run>/curves.png)")
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"got {len(args.labels)} labels for {len(args.runs)} runs")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('error: plotting needs matplotlib: pip install -e ".[viz]"', file=sys.stderr)
        return 2
    try:
        runs = [RunDir.open(path) for path in args.runs]
    except RunDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    labels = args.labels or [run.path.name for run in runs]
    metrics = [run.metrics() for run in runs]
    # (metric, axis label): the success rate only where an env reports it
    panels = [("return", "mean return")]
    if any("success_after" in r for rows in metrics for r in rows):
        panels.append(("success", "success rate"))
    fig, grid = plt.subplots(
        len(panels), 2, figsize=(11, 4 * len(panels)), sharey="row", squeeze=False
    )
    for k, (run, label, rows) in enumerate(zip(runs, labels, metrics, strict=True)):
        if not rows:
            print(f"note: {run.path} has no metrics yet; skipped")
            continue
        color = f"C{k % 10}"
        iters = [r["iteration"] + 1 for r in rows]
        steps = [r["env_steps_total"] for r in rows]
        for axes, (metric, _) in zip(grid, panels, strict=True):
            if f"{metric}_after" not in rows[0]:
                continue
            for ax, x in zip(axes, (iters, steps), strict=True):
                after = [r[f"{metric}_after"] for r in rows]
                ax.plot(x, after, color=color, label=f"{label} (adapted)")
                ax.plot(
                    x,
                    [r[f"{metric}_before"] for r in rows],
                    color=color,
                    ls="--",
                    alpha=0.6,
                    label=f"{label} (before)",
                )
    for axes, (_, ylabel) in zip(grid, panels, strict=True):
        axes[0].set_xlabel("meta-iteration")
        axes[1].set_xlabel("environment steps")
        axes[0].set_ylabel(ylabel)
        for ax in axes:
            ax.grid(alpha=0.3)
    grid[0][0].legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out) if args.out else runs[0].path / "curves.png"
    fig.savefig(out, dpi=120)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
