"""Meta-RL learners assembled from metarl parts, one module per learner.

``AGENTS`` maps the name used on the command line (``--agent``) to the agent class and its
config dataclass.
"""

from __future__ import annotations

from agents.base import AgentConfig, MetaAgent
from agents.maml_trpo import MAMLTRPO, MAMLTRPOConfig

__all__ = ["AGENTS", "AgentConfig", "MetaAgent", "get_agent"]

AGENTS: dict[str, tuple[type[MetaAgent], type[AgentConfig]]] = {
    "maml-trpo": (MAMLTRPO, MAMLTRPOConfig),
}


def get_agent(name: str) -> tuple[type[MetaAgent], type[AgentConfig]]:
    """The agent class and config class registered as ``name``.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of: {', '.join(sorted(AGENTS))}")
    return AGENTS[name]
