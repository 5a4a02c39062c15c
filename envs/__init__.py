"""Task distributions bundled with metarl; importing this package registers them with Gymnasium.

====================================  =========================================================
``metarl/Particles2D-v0``             2D navigation to a goal in ``[-0.5, 0.5]^2`` (MAML)
``metarl/HalfCheetahDir-v0``          HalfCheetah-v5 running forward or backward (MAML)
``metarl/HalfCheetahVel-v0``          HalfCheetah-v5 running at a target speed in ``[0, 2]`` (MAML)
``metarl/AntDir-v0``                  Ant-v5 running forward or backward (MAML, ProMP)
``metarl/AntGoal-v0``                 Ant-v5 walking to a goal in a disc of radius 3 (ProMP)
``metarl/ML1-<family>-v0``            Meta-World ML1: one family (``ML1-reach-v0`` is reach-v3),
                                      its train goals, and 50 other goals to test on
``metarl/ML10-v0``                    Meta-World ML10: 10 families, 5 held-out families to test on
``metarl/ML45-v0``                    Meta-World ML45: 45 families, 5 held-out families to test on
====================================  =========================================================

HalfCheetah episodes last 100 steps (as learn2learn's), Ant episodes 200 (as pytorch-maml-rl's and
ProMP's): an ant needs more of its slower steps to show a direction or reach a goal. Meta-World
episodes last 500 (its ``max_path_length``); Meta-World itself is an optional install (see
:mod:`envs.metaworld`), and its ids fail with the install command until it is there.
"""

from gymnasium.envs.registration import register

__all__ = ["METAWORLD_FAMILIES", "register_envs"]

# Meta-World 3.1.1's task families, without their "-v3" suffix (a test checks the list against it).
METAWORLD_FAMILIES = """
    assembly basketball bin-picking box-close button-press-topdown button-press-topdown-wall
    button-press button-press-wall coffee-button coffee-pull coffee-push dial-turn
    disassemble door-close door-lock door-open door-unlock hand-insert drawer-close
    drawer-open faucet-open faucet-close hammer handle-press-side handle-press
    handle-pull-side handle-pull lever-pull pick-place-wall pick-out-of-hole pick-place
    plate-slide plate-slide-side plate-slide-back plate-slide-back-side peg-insert-side
    peg-unplug-side soccer stick-push stick-pull push push-wall push-back reach reach-wall
    shelf-place sweep-into sweep window-open window-close
""".split()


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
    metaworld = [
        dict(id=f"metarl/ML1-{name}-v0", kwargs=dict(benchmark="ML1", family=f"{name}-v3"))
        for name in METAWORLD_FAMILIES
    ]
    metaworld += [
        dict(id=f"metarl/{bench}-v0", kwargs=dict(benchmark=bench, family=None))
        for bench in ("ML10", "ML45")
    ]
    for spec in metaworld:
        spec.update(
            entry_point="envs.metaworld:MetaWorldEnv",
            vector_entry_point="envs.metaworld_pool:MetaWorldVectorEnv",
            max_episode_steps=500,
            # Meta-World's observation space has zero-width bounds for the hidden goal, which
            # Gymnasium's passive checker warns about on every make (tests run check_env).
            disable_env_checker=True,
        )
    for spec in specs + metaworld:
        if spec["id"] not in registry:
            register(**spec)


register_envs()
