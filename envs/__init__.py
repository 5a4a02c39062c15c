"""Task distributions bundled with metarl; importing this package registers them with Gymnasium.

====================================  =========================================================
``metarl/Particles2D-v0``             2D navigation to a goal in ``[-0.5, 0.5]^2`` (MAML)
``metarl/HalfCheetahDir-v0``          HalfCheetah-v5 running forward or backward (MAML)
``metarl/HalfCheetahVel-v0``          HalfCheetah-v5 running at a target speed in ``[0, 2]`` (MAML)
``metarl/AntDir-v0``                  Ant-v5 running forward or backward (MAML, ProMP)
``metarl/AntGoal-v0``                 Ant-v5 walking to a goal in a disc of radius 3 (ProMP)
====================================  =========================================================

HalfCheetah episodes last 100 steps (as learn2learn's), Ant episodes 200 (as pytorch-maml-rl's and
ProMP's): an ant needs more of its slower steps to show a direction or reach a goal.
"""

from gymnasium.envs.registration import register

__all__ = ["register_envs"]


def register_envs() -> None:
    """Register the bundled task envs (idempotent; runs on ``import envs``)."""
    from gymnasium import registry

    specs = [
        dict(
            id="metarl/Particles2D-v0",
            entry_point="envs.particles:Particles2DEnv",
            vector_entry_point="envs.particles:Particles2DVectorEnv",
            max_episode_steps=100,
        ),
        dict(
            id="metarl/HalfCheetahDir-v0",
            entry_point="envs.half_cheetah:HalfCheetahDirEnv",
            vector_entry_point="envs.half_cheetah:HalfCheetahDirVectorEnv",
            max_episode_steps=100,
        ),
        dict(
            id="metarl/HalfCheetahVel-v0",
            entry_point="envs.half_cheetah:HalfCheetahVelEnv",
            vector_entry_point="envs.half_cheetah:HalfCheetahVelVectorEnv",
            max_episode_steps=100,
        ),
        dict(
            id="metarl/AntDir-v0",
            entry_point="envs.ant:AntDirEnv",
            vector_entry_point="envs.ant:AntDirVectorEnv",
            max_episode_steps=200,
        ),
        dict(
            id="metarl/AntGoal-v0",
            entry_point="envs.ant:AntGoalEnv",
            vector_entry_point="envs.ant:AntGoalVectorEnv",
            max_episode_steps=200,
        ),
    ]
    for spec in specs:
        if spec["id"] not in registry:
            register(**spec)


register_envs()
