"""metarl: meta-reinforcement learning for PyTorch on Gymnasium and MuJoCo.

The library holds everything that does not name a particular env or agent: the task-env contract
(:mod:`metarl.tasks`), vectorized multi-task rollouts (:mod:`metarl.samplers`), policies, baselines,
returns, MAML / Meta-SGD adaptation (:mod:`metarl.maml`), TRPO pieces (:mod:`metarl.trpo`) and run
bookkeeping. Concrete task envs live in the ``envs`` package, learners in ``agents``.
"""

from metarl.maml import MAML, Learner, MetaSGD, adapt_params, per_task
from metarl.tasks import (
    Task,
    TaskContractError,
    TaskEnv,
    check_task_env,
    make_task_env,
    make_task_vec,
    registered_task_envs,
)

__all__ = [
    "MAML",
    "Learner",
    "MetaSGD",
    "Task",
    "TaskContractError",
    "TaskEnv",
    "adapt_params",
    "check_task_env",
    "make_task_env",
    "make_task_vec",
    "per_task",
    "registered_task_envs",
]

__version__ = "0.1.0"
