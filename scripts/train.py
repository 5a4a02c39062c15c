"""Meta-train an agent on a task distribution.

    python scripts/train.py                                   # MAML-TRPO on Particles2D
    python scripts/train.py --config configs/maml-trpo/halfcheetah-dir.toml
    python scripts/train.py --config configs/promp/particles2d.toml --seed 1   # flags override
    python scripts/train.py --resume runs/<run-folder>         # continue a stopped run

Writes a run folder (``--out``, default ``runs/``) with the resolved config, the train task sets,
``metrics.jsonl`` (one row per iteration), checkpoints, and a held-out evaluation at the end.
Ctrl-C or SIGTERM saves a checkpoint of the last finished iteration and exits; ``--resume``
continues from it. The loop itself is :func:`metarl.training.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys

import envs  # noqa: F401  (registers the bundled task envs)
from agents import AGENTS, get_agent
from metarl.cli import (
    ConfigFileError,
    add_dataclass_arguments,
    dataclass_from_args,
    load_config_file,
)
from metarl.runlog import RunDir
from metarl.training import SetupError, TrainConfig, check_train_config, train


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, object]:
    """Parse the command line into the training config and the agent config.

    The agent decides which options exist, so it is read first: from ``--agent``, else from the
    ``--config`` file, else from the run folder of ``--resume`` (whose saved config is used).
    """
    pre = argparse.ArgumentParser(add_help=False)
    for name in ("--agent", "--resume", "--config"):
        pre.add_argument(name, default=None)
    known, _ = pre.parse_known_args(argv)
    saved: dict = {}
    from_file: dict = {}
    if known.resume:
        if known.config:
            raise ValueError("--resume uses the run's saved config; drop --config")
        saved = RunDir.open(known.resume).config()
        known.agent = saved["train"]["agent"]
    elif known.config:
        all_configs = [TrainConfig, *(config_cls for _, config_cls in AGENTS.values())]
        agent_in_file = load_config_file(known.config, all_configs).get("agent")
        _, agent_config_cls = get_agent(known.agent or agent_in_file or TrainConfig.agent)
        from_file = load_config_file(known.config, [TrainConfig, agent_config_cls])
    known.agent = known.agent or from_file.get("agent", TrainConfig.agent)
    _, agent_config_cls = get_agent(known.agent)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"agents: {', '.join(sorted(AGENTS))}; run with --agent NAME --help for its options",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file of options (configs/<agent>/<env>.toml); flags given too override it",
    )
    add_dataclass_arguments(parser, TrainConfig, "training")
    add_dataclass_arguments(parser, agent_config_cls, f"agent ({known.agent})")
    if saved:
        parser.set_defaults(**saved["train"], **saved["agent_config"])
        _warn_dropped(saved, [TrainConfig, agent_config_cls])
    parser.set_defaults(**from_file)
    args = parser.parse_args(argv)
    if known.resume:
        args.resume = known.resume
    cfg = dataclass_from_args(TrainConfig, args)
    agent_config = dataclass_from_args(agent_config_cls, args)
    check_train_config(cfg)
    agent_config.validate()
    return cfg, agent_config


def _warn_dropped(saved: dict, config_classes: list[type]) -> None:
    """Say which settings of a resumed run this version no longer has (they are ignored)."""
    known = {f.name for cls in config_classes for f in dataclasses.fields(cls)}
    dropped = {
        k: v for part in ("train", "agent_config") for k, v in saved[part].items() if k not in known
    }
    if dropped:
        listed = ", ".join(f"{k}={v!r}" for k, v in dropped.items())
        print(
            f"warning: the run was saved with settings this version no longer has; ignoring "
            f"{listed} (see --agent {saved['train']['agent']} --help for today's options)",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, agent_config = parse_args(argv)
        agent_cls, _ = get_agent(cfg.agent)
    except (ValueError, ConfigFileError) as err:
        raise SystemExit(f"error: {err}") from err
    for module in cfg.imports:
        importlib.import_module(module)
    try:
        return int(train(cfg, agent_config, agent_cls))
    except SetupError as err:  # before any training: one line naming the fix
        raise SystemExit(f"error: {err}") from err


if __name__ == "__main__":
    sys.exit(main())
