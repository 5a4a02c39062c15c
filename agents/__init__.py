"""Meta-RL learners assembled from metarl parts, one module per learner.

``AGENTS`` maps the name used on the command line (``--agent``) to the agent class and its
config dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from agents.base import AgentConfig, MetaAgent
from agents.maml_dice import MAMLDiCE, MAMLDiCEConfig
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig
from agents.promp import ProMP, ProMPConfig
from metarl.samplers import Sampler

__all__ = ["AGENTS", "AgentConfig", "MetaAgent", "get_agent", "make_agent"]

AGENTS: dict[str, tuple[type[MetaAgent], type[AgentConfig]]] = {
    "maml-trpo": (MAMLTRPO, MAMLTRPOConfig),
    "maml-dice": (MAMLDiCE, MAMLDiCEConfig),
    "promp": (ProMP, ProMPConfig),
}


def make_agent(
    name: str, sampler: Sampler, config: AgentConfig | Mapping[str, Any], seed: int = 0
) -> MetaAgent:
    """Build agent ``name``; ``config`` may be the dict saved in a run's ``config.json``."""
    agent_cls, config_cls = get_agent(name)
    if isinstance(config, Mapping):
        known = {f.name for f in dataclasses.fields(config_cls)}
        values = {
            k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in known
        }
        config = config_cls(**values)
    return agent_cls(sampler, config, seed=seed)


def get_agent(name: str) -> tuple[type[MetaAgent], type[AgentConfig]]:
    """The agent class and config class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]
