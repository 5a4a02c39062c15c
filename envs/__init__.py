"""Task distributions bundled with metarl; importing this package registers them with Gymnasium.

====================================  =========================================================
``metarl/Particles2D-v0``             2D navigation to a goal in ``[-0.5, 0.5]^2`` (MAML)
``metarl/HalfCheetahDir-v0``          HalfCheetah-v5 running forward or backward (MAML)
``metarl/HalfCheetahVel-v0``          HalfCheetah-v5 running at a target speed in ``[0, 2]`` (MAML)
====================================  =========================================================
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
            vector_entry_point="envs.batched:HalfCheetahDirVectorEnv",
            max_episode_steps=100,
        ),
        dict(
            id="metarl/HalfCheetahVel-v0",
            entry_point="envs.half_cheetah:HalfCheetahVelEnv",
            vector_entry_point="envs.batched:HalfCheetahVelVectorEnv",
            max_episode_steps=100,
        ),
    ]
    for spec in specs:
        if spec["id"] not in registry:
            register(**spec)


register_envs()
