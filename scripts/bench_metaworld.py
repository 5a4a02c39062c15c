"""Benchmark Meta-World sampling: metarl's vector env against Meta-World's own, same run.

For one ML1 family (reach-v3 by default) and ``num_tasks x episodes_per_task`` envs, prints env
steps per second of:

1. the physics alone: ``mj_step`` x frame_skip on one env's model, one core (the ceiling);
2. one Meta-World env stepped in a Python loop, one core (what a worker can do);
3. Meta-World's own ``gymnasium.make_vec("Meta-World/ML1-train", vector_strategy="async")``
   (one process per env), random actions;
4. metarl's ``MetaWorldVectorEnv`` (one process per core, slots in blocks), random actions;
5. metarl's sampler (``MultiTaskSampler``) with a per-task Gaussian MLP policy in the loop, as
   training runs it;

then 4/3 and 5/3. Each figure is the best of ``repeats`` timed runs after a warm-up. Run it on a
quiet machine: other processes on the cores change every figure.

Example:
    python scripts/bench_metaworld.py
    python scripts/bench_metaworld.py --family push-v3 --num-tasks 5 --episodes-per-task 2 \
        --horizon 20

Meta-World's vector env has one env per task of its meta-batch, and that batch must divide its 50
goals: ``num_tasks x episodes_per_task`` must be 1, 2, 5, 10, 25 or 50.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import gymnasium as gym
import mujoco
import numpy as np

import envs  # noqa: F401  (registers the task envs)
from envs.metaworld import apply_task, import_metaworld, make_family_env, task_sets
from envs.metaworld_pool import MetaWorldVectorEnv
from metarl.maml import per_task
from metarl.policies import GaussianMLPPolicy
from metarl.samplers import MultiTaskSampler
from metarl.tasks import Task


def best_rate(run, steps: int, repeats: int) -> tuple[float, float]:
    """Best and worst steps per second of ``repeats`` timed calls of ``run`` after a warm-up."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return steps / min(times), steps / max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", default="reach-v3", help="ML1 task family")
    parser.add_argument("--num-tasks", type=int, default=10)
    parser.add_argument("--episodes-per-task", type=int, default=5)
    parser.add_argument("--horizon", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workers", type=int, default=None, help="metarl worker processes")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="gymnasium")
    import_metaworld()
    n, H = args.num_tasks * args.episodes_per_task, args.horizon
    if 50 % n:
        parser.error(f"num_tasks x episodes_per_task = {n} must divide 50 (Meta-World's goals)")
    goals = task_sets("ML1", args.family, 0)["train"][args.family]
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, size=(H, n, 4)).astype(np.float32)
    cores = len(os.sched_getaffinity(0))
    print(f"Meta-World ML1 {args.family}: {n} envs x {H} steps, {cores} cores")
    rows = []

    env = make_family_env(args.family)
    apply_task(env, args.family, goals[0])
    env.reset()
    model, data = env.model, env.data

    def physics():
        for _ in range(H * env.frame_skip):
            mujoco.mj_step(model, data)

    rows.append(("physics only (mj_step x frame_skip), 1 core", *best_rate(physics, H, 3)))

    def single():
        env.reset()
        for t in range(H):
            env.step(acts[t, 0])

    rows.append(("one Meta-World env, 1 core", *best_rate(single, H, args.repeats)))
    env.close()

    theirs = gym.make_vec(
        "Meta-World/ML1-train",
        env_name=args.family,
        vector_strategy="async",
        meta_batch_size=n,
        seed=0,
    )

    theirs.call("sample_tasks")  # Meta-World's ML envs draw their goals only when told to

    def upstream():
        theirs.reset(seed=0)
        for t in range(H):
            theirs.step(acts[t])

    rows.append((f"Meta-World async vector env ({n} processes)", *best_rate(upstream, n * H, 2)))
    theirs.close()

    ours = MetaWorldVectorEnv(n, "ML1", args.family, workers=args.workers, max_episode_steps=H)
    ours.set_attr(
        "task", [Task(family=args.family, rand_vec=goals[i % len(goals)]) for i in range(n)]
    )

    def metarl_vec():
        ours.reset(seed=0)
        for t in range(H):
            ours.step(acts[t])

    blocks = len(ours._blocks)
    rows.append(
        (f"metarl vector env ({blocks} worker processes)", *best_rate(metarl_vec, n * H, 2))
    )
    ours.close()

    sampler = MultiTaskSampler(
        f"metarl/ML1-{args.family.removesuffix('-v3')}-v0",
        args.num_tasks,
        args.episodes_per_task,
        horizon=H,
        vector_kwargs=dict(workers=args.workers),
    )
    policy = GaussianMLPPolicy(39, 4, hidden_sizes=(100, 100))
    params = per_task(policy.params(), args.num_tasks)
    tasks = sampler.sample_tasks(args.num_tasks, rng)
    rows.append(
        (
            "metarl sampler, per-task MLP policy in the loop",
            *best_rate(lambda: sampler.sample(policy, tasks, params), n * H, 2),
        )
    )
    sampler.close()

    width = max(len(r[0]) for r in rows)
    for name, best, worst in rows:
        print(f"  {name:<{width}}  {best:9.0f} steps/s  (slowest run {worst:.0f})")
    upstream_rate = rows[2][1]
    print(f"  metarl vector env / Meta-World async: {rows[3][1] / upstream_rate:.2f}x")
    print(f"  metarl sampler    / Meta-World async: {rows[4][1] / upstream_rate:.2f}x")
    print(f"  per core, metarl vector env: {rows[3][1] / cores:.0f} steps/s ")
    print(f"  (one env alone: {rows[1][1]:.0f}; physics only: {rows[0][1]:.0f})")


if __name__ == "__main__":
    main()
