"""The CUDA paths: meta-gradients against the closed form and the CPU, same seed same metrics,
every agent variant, and the train, evaluate and few-shot scripts with ``--device cuda``.

Skipped where there is no CUDA device; ``bash scripts/gpu_check.sh`` runs them on a GPU machine."""

import numpy as np
import pytest
import torch
from scripts_helpers import metrics, run_script
from torch import nn

import envs  # noqa: F401
from agents import make_agent
from metarl.maml import MAML
from metarl.records import InnerStep
from metarl.returns import masked_task_mean
from metarl.samplers import MultiTaskSampler

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]
SMALL = {"hidden_sizes": (16, 16)}


def test_maml_meta_gradient_matches_closed_form_on_cuda():
    g = torch.Generator().manual_seed(0)
    xs, ys, xq, yq = (torch.randn(8, d, generator=g, dtype=torch.float64) for d in (4, 1, 4, 1))
    model = nn.Linear(4, 1, bias=False).double()
    w = model.weight.detach().clone().reshape(-1, 1)
    maml = MAML(model.cuda(), lr=0.3)
    learner = maml.clone()
    learner.adapt(((learner(xs.cuda()) - ys.cuda()) ** 2).mean())
    ((learner(xq.cuda()) - yq.cuda()) ** 2).mean().backward()
    hess = 2.0 / 8 * xs.T @ xs
    adapted = w - 0.3 * (hess @ w - 2.0 / 8 * xs.T @ ys)
    expected = (torch.eye(4, dtype=torch.float64) - 0.3 * hess) @ (
        2.0 / 8 * xq.T @ (xq @ adapted - yq)
    )
    torch.testing.assert_close(model.weight.grad.cpu(), expected.reshape(1, -1))


@pytest.mark.parametrize("name", ["maml-trpo", "maml-dice", "promp"])
def test_same_seed_same_metrics_on_cuda(name):
    runs = []
    for _ in range(2):
        sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, device="cuda", seed=0)
        agent = make_agent(name, sampler, {"hidden_sizes": (16, 16)}, seed=0)
        rng = np.random.default_rng(0)
        runs.append([agent.step(sampler.sample_tasks(3, rng)) for _ in range(2)])
        assert next(agent.policy.parameters()).is_cuda
    strip = [
        [{k: v for k, v in m.items() if not k.startswith("time") and "per_s" not in k} for m in run]
        for run in runs
    ]
    np.testing.assert_equal(strip[0], strip[1])  # NaN equals NaN here (MAML-DiCE has no KL)


def test_episodes_live_on_the_policy_device():
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 2, 2, horizon=5, device="cuda", seed=0)
    agent = make_agent("maml-trpo", sampler, {"hidden_sizes": (8,)}, seed=0)
    episodes = sampler.sample(agent.policy, sampler.sample_tasks(2, np.random.default_rng(0)))
    assert episodes.observations.is_cuda and episodes.rewards.is_cuda


def _adapt_and_differentiate(name, device, pre, post):
    """Adapted parameters and meta-gradient of agent ``name`` on ``device`` for given episodes."""
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, device=device, seed=0)
    agent = make_agent(name, sampler, SMALL, seed=0)
    pre, post = pre.to(device), post.to(device)
    adapted = agent.readapt(agent.policy.params(), [InnerStep(pre, agent.inner_targets(pre))])
    logp = agent.log_probs(post, adapted)
    loss = -masked_task_mean(logp * agent.advantages(post), post.mask).mean()
    grads = torch.autograd.grad(loss, agent.outer_parameters())
    sampler.close()
    flat_grad = torch.cat([g.reshape(-1) for g in grads]).cpu()
    return [v.detach().cpu() for v in adapted.values()], flat_grad


@pytest.mark.parametrize("name", ["maml-trpo", "maml-dice", "promp"])
def test_cuda_adapts_and_differentiates_like_the_cpu(name):
    """Same initial policy, same episodes: the inner step (REINFORCE, DiCE or LVC) and the
    second-order meta-gradient agree between the devices up to float32 rounding."""
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, seed=0)
    policy = make_agent(name, sampler, SMALL, seed=0).policy
    tasks = sampler.sample_tasks(3, np.random.default_rng(0))
    pre, post = sampler.sample(policy, tasks), sampler.sample(policy, tasks)
    cpu_params, cpu_grad = _adapt_and_differentiate(name, "cpu", pre, post)
    cuda_params, cuda_grad = _adapt_and_differentiate(name, "cuda", pre, post)
    for a, b in zip(cuda_params, cpu_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    scale = cpu_grad.abs().max().item()
    torch.testing.assert_close(cuda_grad, cpu_grad, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("name", ["maml-trpo", "maml-dice", "promp"])
@pytest.mark.parametrize(
    "variant",
    [{"first_order": True}, {"meta_sgd": True}, {"inner_steps": 2, "bootstrap_truncated": True}],
)
def test_every_variant_steps_and_adapts_on_cuda(name, variant):
    sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, device="cuda", seed=0)
    agent = make_agent(name, sampler, {**SMALL, **variant}, seed=0)
    metrics = agent.step(sampler.sample_tasks(3, np.random.default_rng(0)))
    assert np.isfinite([metrics.return_before, metrics.return_after]).all()
    assert all(p.is_cuda for p in agent.outer_parameters())
    tasks = sampler.sample_tasks(3, np.random.default_rng(1))
    adapted = agent.adapt(sampler.sample(agent.policy, tasks))
    after = sampler.sample(agent.policy, tasks, adapted)
    assert after.rewards.is_cuda and torch.isfinite(after.episode_returns()).all()


def test_halfcheetah_batched_physics_with_a_cuda_policy():
    sampler = MultiTaskSampler("metarl/HalfCheetahDir-v0", 2, 2, horizon=10, device="cuda", seed=0)
    agent = make_agent("maml-trpo", sampler, SMALL, seed=0)
    metrics = agent.step(sampler.sample_tasks(2, np.random.default_rng(0)))
    assert np.isfinite(metrics.return_after) and metrics.env_steps == 2 * 2 * 10 * 2


RUN = ["--meta-batch-size", "3", "--episodes-per-task", "3", "--horizon", "15"]
RUN += ["--eval-tasks", "0", "--checkpoint-every", "1", "--device", "cuda", "--threads", "1"]


def test_train_resume_and_evaluate_scripts_on_cuda(tmp_path):
    """Two iterations, a resume to three, equal to three straight; then evaluation on CUDA."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    proc = run_script("train", *RUN, "--iterations", "3", "--out", str(straight))
    assert proc.returncode == 0, proc.stderr
    proc = run_script("train", *RUN, "--iterations", "2", "--out", str(split))
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = split.iterdir()
    proc = run_script("train", "--resume", str(run_dir), "--iterations", "3")
    assert proc.returncode == 0, proc.stderr
    assert metrics(run_dir) == metrics(next(straight.iterdir()))
    proc = run_script(
        "evaluate", str(run_dir), "--tasks", "3", "--episodes", "2", "--adapt-steps", "1",
        "--device", "cuda",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_run_sampled_on_cpu_resumes_on_cuda():
    states = []
    for device in ("cpu", "cuda"):
        sampler = MultiTaskSampler("metarl/Particles2D-v0", 3, 4, horizon=20, device=device)
        agent = make_agent("promp", sampler, SMALL, seed=0)
        if states:
            with pytest.warns(RuntimeWarning, match="--device cpu"):
                agent.load_state_dict(states[0])
        agent.step(sampler.sample_tasks(3, np.random.default_rng(0)))
        states.append(agent.state_dict())
    assert next(agent.policy.parameters()).is_cuda


FEWSHOT = [
    "--dataset", "glyphs", "--glyph-classes", "40", "--glyph-samples", "4",
    "--ways", "5", "--shots", "1", "--queries", "2", "--test-queries", "2",
    "--iterations", "3", "--eval-every", "2", "--val-tasks", "2", "--test-tasks", "3",
    "--hidden", "8", "--no-progress", "--device", "cuda",
]  # fmt: skip


@pytest.mark.parametrize("method", [["maml", "--meta-batch", "2"], ["protonets"]])
def test_fewshot_script_on_cuda(method, tmp_path):
    args = ["--method", *method, *FEWSHOT, "--data-root", str(tmp_path / "data")]
    proc = run_script("fewshot", *args, "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "meta-test accuracy" in proc.stdout
