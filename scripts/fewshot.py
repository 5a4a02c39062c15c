"""Train and evaluate a few-shot classifier: prototypical networks or MAML / FOMAML / Meta-SGD.

Meta-trains on the benchmark's meta-train classes, keeps the weights that do best on a fixed set
of meta-validation tasks, and reports the meta-test accuracy with its 95% confidence interval over
a fixed set of tasks from classes never seen in training.

Usage::

    python scripts/fewshot.py --method protonets --dataset glyphs --ways 5 --shots 1
    python scripts/fewshot.py --method maml --dataset omniglot --data-root ~/omniglot --download

The run folder ``<out>/<timestamp>-fewshot-<dataset>-<method>/`` (``--out`` defaults to ``runs``)
is laid out like the RL runs (:mod:`metarl.runlog`): ``config.json``, ``metrics.jsonl`` (one JSON
line per iteration and per validation), ``checkpoints/`` (``last.pt``, ``best.pt`` by validation
accuracy, the last few ``iter_*.pt``) and ``test.json`` (the meta-test result). The loop itself is
:func:`metarl.supervised.training.run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from metarl.cli import add_dataclass_arguments, dataclass_from_args
from metarl.supervised.training import FewShotConfig, prepare, run


def parse_args(argv: Sequence[str] | None = None) -> FewShotConfig:
    """Parse the command line into a :class:`FewShotConfig` (one option per field)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_dataclass_arguments(parser, FewShotConfig, "few-shot run")
    return dataclass_from_args(FewShotConfig, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, check, run; exit status 2 with the fix on stderr for bad input."""
    cfg = parse_args(argv)
    try:
        bench = prepare(cfg)
    except (ValueError, FileNotFoundError) as err:
        print(f"fewshot.py: error: {err}", file=sys.stderr)
        return 2
    run(cfg, bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
