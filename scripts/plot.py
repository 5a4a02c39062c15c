"""Plot learning curves of one or more runs.

    python scripts/plot.py runs/<run-a> runs/<run-b> --labels "MAML-TRPO" "ProMP" --out curves.png

Draws the mean return before and after adaptation against iterations and against environment
steps, one colour per run. Needs matplotlib (``pip install -e ".[viz]"``).
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (run, label) in enumerate(zip(runs, labels, strict=True)):
        rows = run.metrics()
        if not rows:
            print(f"note: {run.path} has no metrics yet; skipped")
            continue
        color = f"C{k % 10}"
        iters = [r["iteration"] + 1 for r in rows]
        steps = [r["env_steps_total"] for r in rows]
        for ax, x in zip(axes, (iters, steps), strict=True):
            ax.plot(x, [r["return_after"] for r in rows], color=color, label=f"{label} (adapted)")
            ax.plot(
                x,
                [r["return_before"] for r in rows],
                color=color,
                ls="--",
                alpha=0.6,
                label=f"{label} (before)",
            )
    axes[0].set_xlabel("meta-iteration")
    axes[1].set_xlabel("environment steps")
    axes[0].set_ylabel("mean return")
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(args.out) if args.out else runs[0].path / "curves.png"
    fig.savefig(out, dpi=120)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
