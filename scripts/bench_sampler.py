"""Benchmark multi-task sampling on MuJoCo task envs: generic vector env vs batched physics.

Measures, in one run and for each env of ``--env-ids`` (HalfCheetahDir, AntDir and AntGoal by
default), env steps per second for ``num_tasks x episodes_per_task`` envs and ``horizon`` steps
with a Gaussian MLP policy in the loop (one batched policy call per step, through
:class:`metarl.samplers.MultiTaskSampler`):

1. Gymnasium's ``SyncVectorEnv`` of the single env;
2. the env's batched vector env (on ``envs.batched``, MuJoCo's C++ threads);
3. the raw physics limit: :func:`mujoco.rollout.rollout` stepping the same model's envs open loop
   for the same number of substeps (no policy, no Python per step), on the same number of threads;

then the ratios 2/3 and 2/1. Each figure is the best of ``repeats`` timed runs after one warm-up;
the spread (slowest run) is printed next to it.

Reading the Ant rows: the batched Ant env also runs ``mj_rnePostConstraint`` after each step for
every env whose last substep had a contact (the contact forces its observation and contact cost
read; the raw rollout has none), in Python, one env at a time. An ant that leaves its healthy
height ends its episode early (AntDir); the sampler pauses the env of an ended episode
(:meth:`metarl.vector.BatchedTaskVectorEnv.pause_envs`), so that only running episodes cost
physics, and counts only their steps.

Example:
    python scripts/bench_sampler.py
    python scripts/bench_sampler.py --num-tasks 2 --episodes-per-task 2 --horizon 5 --repeats 1
    python scripts/bench_sampler.py --env-ids metarl/AntDir-v0 --no-sync
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import gymnasium as gym
import mujoco
import numpy as np
import torch
from mujoco import rollout

import envs  # noqa: F401  (registers the task envs)
from metarl.maml import per_task
from metarl.policies import GaussianMLPPolicy
from metarl.samplers import MultiTaskSampler, make_sampler


@dataclasses.dataclass
class BenchConfig:
    """Settings of one benchmark run."""

    env_ids: tuple[str, ...] = dataclasses.field(
        default=("metarl/HalfCheetahDir-v0", "metarl/AntDir-v0", "metarl/AntGoal-v0"),
        metadata={"help": "MuJoCo task envs with a batched vector_entry_point, measured in turn"},
    )
    num_tasks: int = dataclasses.field(default=40, metadata={"help": "tasks per sample (T)"})
    episodes_per_task: int = dataclasses.field(
        default=20, metadata={"help": "episodes per task (E); the vector env holds T*E envs"}
    )
    horizon: int = dataclasses.field(default=100, metadata={"help": "steps per episode"})
    repeats: int = dataclasses.field(
        default=5, metadata={"help": "timed runs per measurement, after one warm-up run"}
    )
    torch_threads: int = dataclasses.field(
        default=1,
        metadata={
            "help": "torch intra-op threads; 1 leaves the cores to MuJoCo's pool, which runs "
            "between policy calls"
        },
    )
    mujoco_threads: int = dataclasses.field(
        default=os.cpu_count() or 1,
        metadata={
            "help": "MuJoCo threads of the batched env and the raw rollout (all CPUs by default)"
        },
    )
    per_task_params: bool = dataclasses.field(
        default=False,
        metadata={"help": "evaluate per-task parameters (as after adaptation) instead of shared"},
    )
    sync: bool = dataclasses.field(
        default=True, metadata={"help": "measure SyncVectorEnv (slow at large sizes)"}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "seed of tasks, resets, actions"})
    workers: int = dataclasses.field(
        default=0,
        metadata={"help": "also measure the Ray sampler with this many actors (0: not)"},
    )
    ray_address: str | None = dataclasses.field(
        default=None, metadata={"help": "Ray cluster to use (None: a local Ray)"}
    )


def parse_config(argv: list[str] | None = None) -> BenchConfig:
    """Build a :class:`BenchConfig` from command-line flags (one ``--flag`` per field)."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    for field in dataclasses.fields(BenchConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = field.metadata["help"]
        if isinstance(field.default, bool):
            parser.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=field.default, help=help_text
            )
        elif isinstance(field.default, tuple):
            parser.add_argument(flag, nargs="+", default=field.default, help=help_text)
        else:
            parser.add_argument(
                flag, type=type(field.default), default=field.default, help=help_text
            )
    args = vars(parser.parse_args(argv))
    config = BenchConfig(**{**args, "env_ids": tuple(args["env_ids"])})
    for name in ("num_tasks", "episodes_per_task", "horizon", "repeats", "torch_threads"):
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if config.mujoco_threads < 1:
        parser.error("--mujoco-threads must be >= 1")
    return config


@contextmanager
def collect_mujoco_warnings() -> Iterator[None]:
    """Report MuJoCo's warnings once each (its compiler warns on every HalfCheetah model load)."""
    seen: set[str] = set()
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(seen.add)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)
        for message in sorted(seen):
            warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=1)


Runner = Callable[[], float]  # one timed run, returning env steps per second


def sampler_runner(config: BenchConfig, env_id: str, mode: str, stack: ExitStack) -> Runner:
    """One ``sample`` call through a vectorization mode (or the Ray sampler), as a runner."""
    T, E = config.num_tasks, config.episodes_per_task
    with collect_mujoco_warnings():
        batched = mode == "vector_entry_point"
        if mode == "ray":  # each actor: one MuJoCo and one torch thread
            sampler = make_sampler(
                "ray", env_id, T, E, horizon=config.horizon, seed=config.seed,
                workers=config.workers, ray_address=config.ray_address,
            )  # fmt: skip
        else:
            sampler = MultiTaskSampler(
                env_id,
                T,
                E,
                horizon=config.horizon,
                vectorization_mode=mode,
                seed=config.seed,
                vector_kwargs={"num_threads": config.mujoco_threads} if batched else None,
                sampling_threads=config.torch_threads,
            )
        stack.callback(sampler.close)
    torch.manual_seed(config.seed)
    obs_dim = int(np.prod(sampler.observation_space.shape))
    act_dim = int(np.prod(sampler.action_space.shape))
    policy = GaussianMLPPolicy(obs_dim, act_dim, hidden_sizes=(100, 100))
    params = per_task(policy.params(), T) if config.per_task_params else None
    tasks = sampler.sample_tasks(T, np.random.default_rng(config.seed))

    def run() -> float:
        sampler.sample(policy, tasks, params)
        return sampler.last_steps_per_second

    return run


def raw_rollout_runner(config: BenchConfig, env_id: str, stack: ExitStack) -> Runner:
    """``mujoco.rollout`` stepping the same envs open loop for ``horizon`` env steps, as a runner.

    Initial states are the env's own resets; controls are uniform in the control range and held
    for ``frame_skip`` substeps, as an env step holds its action. The thread pool persists across
    runs, as the batched env's does.
    """
    n = config.num_tasks * config.episodes_per_task
    with collect_mujoco_warnings():
        env = gym.make(env_id).unwrapped
    stack.callback(env.close)
    model = env.model
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    states = np.empty((n, mujoco.mj_stateSize(model, spec)))
    for i in range(n):
        env.reset(seed=config.seed + i)
        mujoco.mj_getState(model, env.data, states[i], spec)
    rng = np.random.default_rng(config.seed)
    low, high = model.actuator_ctrlrange.T
    control = rng.uniform(low, high, size=(n, config.horizon, 1, model.nu))
    control = np.repeat(control, env.frame_skip, axis=2).reshape(n, -1, model.nu)
    datas = [mujoco.MjData(model) for _ in range(config.mujoco_threads)]
    # As rollout.rollout: a single MjData runs on the calling thread, without a pool.
    pool = stack.enter_context(rollout.Rollout(nthread=len(datas) if len(datas) > 1 else 0))

    def run() -> float:
        start = time.perf_counter()
        pool.rollout(model, datas, states, control)
        return n * config.horizon / (time.perf_counter() - start)

    return run


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Run the benchmark, print one table per env and return the best rates (steps/s) by env.

    The measurements take turns (one run of each, of every env, per round) so that a change in the
    load of a shared machine affects all of them alike.
    """
    config = parse_config(argv)
    torch.set_num_threads(config.torch_threads)
    load_before = os.getloadavg()[0]
    n = config.num_tasks * config.episodes_per_task
    print(
        f"N = {n} envs ({config.num_tasks} tasks x {config.episodes_per_task} "
        f"episodes), horizon {config.horizon}, policy 2x100 Gaussian MLP "
        f"({'per-task' if config.per_task_params else 'shared'} parameters)\n"
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({config.torch_threads} threads), "
        f"mujoco {mujoco.__version__} ({config.mujoco_threads} threads); best of "
        f"{config.repeats} interleaved runs after a warm-up (slowest in brackets)"
    )
    names = {
        "sync": "1. SyncVectorEnv + policy",
        "batched": "2. batched vector env + policy",
        "raw": "3. mujoco.rollout open loop (physics limit)",
        "ray": f"4. Ray sampler, {config.workers} actors",
    }
    with ExitStack() as stack:
        runners: dict[tuple[str, str], Runner] = {}
        for env_id in config.env_ids:
            if config.sync:
                runners[env_id, "sync"] = sampler_runner(config, env_id, "sync", stack)
            runners[env_id, "batched"] = sampler_runner(config, env_id, "vector_entry_point", stack)
            runners[env_id, "raw"] = raw_rollout_runner(config, env_id, stack)
            if config.workers:
                runners[env_id, "ray"] = sampler_runner(config, env_id, "ray", stack)
        rates: dict[tuple[str, str], list[float]] = {key: [] for key in runners}
        for round_ in range(config.repeats + 1):
            for key, run in runners.items():
                rate = run()
                if round_ > 0:  # round 0 warms up
                    rates[key].append(rate)
    print(
        f"machine load average (1 min) before / after: {load_before:.1f} / "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    best: dict[str, dict[str, float]] = {env_id: {} for env_id in config.env_ids}
    for (env_id, kind), values in rates.items():
        best[env_id][kind] = max(values)
    for env_id in config.env_ids:
        print(f"\n{env_id}")
        for kind, rate in best[env_id].items():
            slowest = min(rates[env_id, kind])
            print(f"{names[kind]:<46} {rate:>10,.0f} steps/s  [{slowest:>9,.0f}]")
        env_best = best[env_id]
        print(f"{'ratio 2/3 (target >= 0.8)':<46} {env_best['batched'] / env_best['raw']:>10.2f}")
        if config.sync:
            ratio = env_best["batched"] / env_best["sync"]
            print(f"{'ratio 2/1 (target >= 2.5)':<46} {ratio:>10.2f}")
        if config.workers:
            ratio = env_best["ray"] / env_best["batched"]
            print(f"{'ratio 4/2 (Ray over local, target >= 0.85)':<46} {ratio:>10.2f}")
    if config.workers:
        print_ray_traffic(config)
    return best


def print_ray_traffic(config: BenchConfig) -> None:
    """Bytes a Ray call moves: parameters out (once, object store), episodes back (float32)."""
    env = gym.make(config.env_ids[0]).unwrapped
    obs, act = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    policy = GaussianMLPPolicy(obs, act, hidden_sizes=(100, 100))
    T, E, H = config.num_tasks, config.episodes_per_task, config.horizon
    params = sum(p.numel() for p in policy.parameters()) * 4 * (T if config.per_task_params else 1)
    noise = T * E * H * act * 4
    # observations, actions, log-probs, rewards, mask, terminated, truncated, last observations
    back = T * E * (H * (obs + act + 4) * 4 + obs * 4)
    print(
        f"\nRay traffic per sample call ({config.env_ids[0]}): parameters out "
        f"{params / 1e6:.2f} MB, action noise out {noise / 1e6:.2f} MB, episodes back "
        f"{back / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
