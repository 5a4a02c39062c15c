"""Meta-World (Farama, 3.x) as metarl task distributions: ML1 for each family, ML10 and ML45.

A task is ``Task(family="reach-v3", rand_vec=(...))``: the Sawyer task family and the vector
Meta-World draws object and goal positions from (its ``_last_rand_vec``), the whole of what its
pickled ``Task.data`` holds besides the env class and the observability flag. Tasks are therefore
JSON values, and the task files a run saves give back the same episodes.

Train and test tasks are Meta-World's own: ``metaworld.ML1(family, seed)`` and
``metaworld.ML10/ML45(seed)`` build 50 goals per family for each split (ML1: other goals of the
same family; ML10/ML45: held-out families), with ``benchmark_seed`` as their seed. A task env draws
from them with the generator it is given, spreading the tasks evenly over the split's families.
Only those goals are accepted as tasks: Meta-World's resets loop until a drawn goal satisfies the
family's constraints, and would loop for ever on a frozen goal that does not.

Episodes last 500 steps (Meta-World's ``max_path_length``) and are truncated, never terminated;
``info["success"]`` is Meta-World's success flag. Each Meta-World env holds its own MuJoCo model
(about 19 MB, nearly all meshes), so the vector env (:mod:`envs.metaworld_pool`) keeps one env per
slot and family in use and steps them in worker processes.

Meta-World 3.1.1 pins ``mujoco==3.3.0``; it is installed with ``--no-deps`` next to MuJoCo 4 and
:func:`patch_mocap_welds` adapts the one place it breaks there.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import sys
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from metarl.tasks import Task, TaskEnv

__all__ = [
    "BENCHMARKS",
    "INSTALL",
    "MetaWorldEnv",
    "benchmark_families",
    "import_metaworld",
    "patch_mocap_welds",
    "task_sets",
]

INSTALL = 'pip install -e ".[metaworld]" && pip install --no-deps "metaworld==3.1.1"'
BENCHMARKS = ("ML1", "ML10", "ML45")
HORIZON = 500

# Meta-World's weld row: anchor (3), relative pose (position 3, quaternion 4), torque scale.
_WELD = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0)
# The literal Meta-World 3.1.1 assigns; the shim refuses to replace a method that changed.
_UPSTREAM_WELD = "[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 5.0]"


def _reset_mocap_welds(self: Any) -> None:
    """Meta-World's ``reset_mocap_welds`` for any ``mjNEQDATA``.

    MuJoCo 4 gives ``eq_data`` a 12th entry. For a weld it is 0 when the relative pose was given
    (as in ``<weld relpose=...>``) and 1 when the compiler computed it from the initial
    configuration; Meta-World gives the pose, so the row is its 11 values and then zeros.
    """
    model = self.model
    if model.nmocap > 0 and model.eq_data is not None:
        row = np.zeros(model.eq_data.shape[1])
        row[: len(_WELD)] = _WELD
        for i in range(model.eq_data.shape[0]):
            if model.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
                model.eq_data[i] = row


def patch_mocap_welds() -> None:
    """Replace ``SawyerMocapBase.reset_mocap_welds`` by :func:`_reset_mocap_welds` (idempotent).

    Raises:
        RuntimeError: if the installed Meta-World's method is not the one this shim replaces.
    """
    from metaworld import sawyer_xyz_env

    base = sawyer_xyz_env.SawyerMocapBase
    if base.reset_mocap_welds is _reset_mocap_welds:
        return
    if _UPSTREAM_WELD not in inspect.getsource(base.reset_mocap_welds):
        raise RuntimeError(
            "this Meta-World's SawyerMocapBase.reset_mocap_welds is not 3.1.1's, which metarl's "
            f"MuJoCo-4 shim replaces; install the tested version: {INSTALL}"
        )
    global REPLACED
    REPLACED = base.reset_mocap_welds
    base.reset_mocap_welds = _reset_mocap_welds


REPLACED: Any = None  # Meta-World's own reset_mocap_welds, once replaced


def import_metaworld() -> Any:
    """Import Meta-World with the MuJoCo-4 shim applied.

    Raises:
        ImportError: naming the install command when Meta-World is missing.
    """
    try:
        import metaworld
    except ImportError as err:
        raise ImportError(
            f"Meta-World is not installed; install it with: {INSTALL} (--no-deps because "
            "Meta-World pins mujoco 3.3, and metarl needs MuJoCo 4's batched physics)"
        ) from err
    patch_mocap_welds()
    return metaworld


def benchmark_families(benchmark: str, family: str | None = None) -> dict[str, list[str]]:
    """The task families of each split: ``{"train": [...], "test": [...]}``.

    Raises:
        ValueError: for an unknown benchmark or (ML1) family, listing the known ones.
    """
    import_metaworld()
    from metaworld import env_dict

    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown Meta-World benchmark {benchmark!r}; choose one of {BENCHMARKS}")
    if benchmark == "ML1":
        if family not in env_dict.ALL_V3_ENVIRONMENTS:
            known = ", ".join(env_dict.ALL_V3_ENVIRONMENTS)
            raise ValueError(f"unknown Meta-World family {family!r}; the families are: {known}")
        return {"train": [family], "test": [family]}
    classes = env_dict.ML10_V3 if benchmark == "ML10" else env_dict.ML45_V3
    return {split: list(classes[split]) for split in ("train", "test")}


@functools.cache
def task_sets(benchmark: str, family: str | None, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Meta-World's goals: ``{split: {family: [50, d] rand_vecs}}``, built once per process.

    Building runs Meta-World's own task generation (ML1 about 1.5 s, ML10 8 s, ML45 30 s here).
    """
    metaworld = import_metaworld()
    benchmark_families(benchmark, family)  # validates the names
    if benchmark != "ML1":
        print(
            f"metarl: building Meta-World's {benchmark} goals (once per process)", file=sys.stderr
        )
    bench = (
        metaworld.ML1(family, seed=seed)
        if benchmark == "ML1"
        else getattr(metaworld, benchmark)(seed=seed)
    )
    sets: dict[str, dict[str, np.ndarray]] = {}
    for split, tasks in (("train", bench.train_tasks), ("test", bench.test_tasks)):
        goals: dict[str, list[np.ndarray]] = {}
        for task in tasks:
            goals.setdefault(task.env_name, []).append(pickle.loads(task.data)["rand_vec"])
        sets[split] = {name: np.asarray(vecs, dtype=np.float64) for name, vecs in goals.items()}
    return sets


def make_family_env(family: str, render_mode: str | None = None) -> Any:
    """A new Meta-World env of ``family`` (goal hidden, as in Meta-World's ML benchmarks)."""
    import_metaworld()
    from metaworld import env_dict

    return env_dict.ALL_V3_ENVIRONMENTS[family](render_mode=render_mode)


def apply_task(env: Any, family: str, rand_vec: np.ndarray) -> None:
    """``env.set_task`` with the Meta-World task ``(family, rand_vec)``, goal hidden (as ML)."""
    from metaworld.types import Task as MetaWorldTask

    data = {"rand_vec": np.array(rand_vec), "env_cls": type(env), "partially_observable": True}
    env.set_task(MetaWorldTask(env_name=family, data=pickle.dumps(data)))


class MetaWorldEnv(TaskEnv, gym.Env):
    """One Meta-World benchmark as a task env (one Sawyer env at a time).

    Args:
        benchmark: ``"ML1"``, ``"ML10"`` or ``"ML45"``.
        family: the ML1 task family (``"reach-v3"``); ignored by ML10/ML45.
        benchmark_seed: the seed of Meta-World's goal sets (tasks are drawn from them).
        render_mode: ``"rgb_array"`` or None.

    The Meta-World env of the current task's family is built on first use and rebuilt when a task
    of another family is set; :class:`envs.metaworld_pool.MetaWorldVectorEnv` keeps envs of several
    families alive instead.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}
    task_splits = ("train", "test")

    def __init__(
        self,
        benchmark: str = "ML1",
        family: str | None = "reach-v3",
        benchmark_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        self.benchmark = benchmark
        self.family = family if benchmark == "ML1" else None
        self.benchmark_seed = int(benchmark_seed)
        self.families = benchmark_families(benchmark, self.family)
        self.render_mode = render_mode
        self._sets = task_sets(benchmark, self.family, self.benchmark_seed)
        self._goals: dict[str, set[tuple[float, ...]]] = {}
        for split in self._sets.values():  # ML1's family has goals in both splits
            for name, vecs in split.items():
                self._goals.setdefault(name, set()).update(tuple(map(float, v)) for v in vecs)
        self._env: Any = None
        self._env_family: str | None = None
        self._applied: Task | None = None
        first = self.families["train"][0]
        self.set_task(Task(family=first, rand_vec=self._sets["train"][first][0]))
        env = self._current()
        self.observation_space = env.observation_space
        self.action_space = env.action_space

    def _sample_tasks(self, n: int, rng: np.random.Generator, split: str) -> list[Task]:
        families = self.families[split]
        order = [families[i] for i in rng.permutation(len(families))]
        tasks = []
        for i in range(n):
            name = order[i % len(order)]
            goals = self._sets[split][name]
            tasks.append(Task(family=name, rand_vec=goals[rng.integers(len(goals))]))
        return tasks

    def _validate_task(self, task: Mapping[str, Any]) -> Task:
        form = 'Task(family="<family>", rand_vec=(<numbers>))'
        if set(task) != {"family", "rand_vec"}:
            raise ValueError(f"a Meta-World task is {form}; got keys {sorted(task)}")
        task = Task(task)
        name, vec = task["family"], task["rand_vec"]
        if name not in self._goals:
            known = ", ".join(sorted(self._goals))
            raise ValueError(f"{name!r} is not a {self.benchmark} family; its families: {known}")
        if vec not in self._goals[name]:
            raise ValueError(
                f"rand_vec {vec!r} is not one of Meta-World's {self.benchmark} goals of {name} for "
                f"benchmark_seed={self.benchmark_seed}; draw tasks with sample_tasks, or load the "
                "task file of the run that drew them (with that run's benchmark_seed)"
            )
        return task

    def _current(self) -> Any:
        """The Meta-World env of the current task's family, with the current task set."""
        name = self._task["family"]
        if self._env_family != name:
            if self._env is not None:
                self._env.close()
            self._env, self._env_family, self._applied = (
                make_family_env(name, self.render_mode),
                name,
                None,
            )
        if self._applied != self._task:
            apply_task(self._env, name, np.asarray(self._task["rand_vec"]))
            self._applied = self._task
        return self._env

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed, options=options)
        obs, info = self._current().reset()
        return obs, info

    def step(self, action: np.ndarray):
        obs, reward, terminated, truncated, info = self._current().step(action)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def render(self):
        return self._current().render()

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._env_family = None, None
