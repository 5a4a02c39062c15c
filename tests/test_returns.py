"""Returns, GAE and the linear baseline against direct per-episode computations."""

import numpy as np
import pytest
import torch

from metarl._cherry import cherry
from metarl.baselines import LinearFeatureBaseline
from metarl.returns import discounted_returns, gae, normalize


def _batch(seed=0, shape=(3, 4, 7)):
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(*shape, generator=g, dtype=torch.float64)
    values = torch.randn(*shape, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, shape[-1] + 1, shape[:-1], generator=g)
    lengths[0, 0] = shape[-1]  # at least one full-length episode
    mask = (torch.arange(shape[-1]) < lengths.unsqueeze(-1)).double()
    boot = torch.randn(*shape[:-1], generator=g, dtype=torch.float64)
    return rewards * mask, values * mask, mask, lengths, boot


def _direct_returns(r, length, gamma, boot):
    out = np.zeros(len(r))
    for t in range(length):
        out[t] = (
            sum(gamma ** (k - t) * r[k] for k in range(t, length)) + gamma ** (length - t) * boot
        )
    return out


def _direct_gae(r, v, length, gamma, lam, boot):
    vals = [*list(v[:length]), boot]
    deltas = [r[t] + gamma * vals[t + 1] - vals[t] for t in range(length)]
    out = np.zeros(len(r))
    for t in range(length):
        out[t] = sum((gamma * lam) ** (k - t) * deltas[k] for k in range(t, length))
    return out


@pytest.mark.parametrize("use_boot", [False, True])
def test_discounted_returns_match_direct_computation(use_boot):
    rewards, _, mask, lengths, boot = _batch()
    boot = boot if use_boot else torch.zeros_like(boot)
    got = discounted_returns(rewards, mask, 0.9, boot if use_boot else None)
    for idx in np.ndindex(*lengths.shape):
        expected = _direct_returns(rewards[idx].numpy(), int(lengths[idx]), 0.9, float(boot[idx]))
        np.testing.assert_allclose(got[idx].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_direct_computation_with_early_termination(lam):
    rewards, values, mask, lengths, boot = _batch(1)
    assert (lengths < rewards.shape[-1]).any(), "needs early-terminating episodes"
    got = gae(rewards, values, mask, 0.9, lam, boot)
    for idx in np.ndindex(*lengths.shape):
        expected = _direct_gae(
            rewards[idx].numpy(), values[idx].numpy(), int(lengths[idx]), 0.9, lam, float(boot[idx])
        )
        np.testing.assert_allclose(got[idx].numpy(), expected, atol=1e-12)


def test_gae_with_lambda_one_is_returns_minus_values():
    rewards, values, mask, _, _ = _batch(2)
    torch.testing.assert_close(
        gae(rewards, values, mask, 0.99, 1.0),
        (discounted_returns(rewards, mask, 0.99) - values) * mask,
    )


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="mask"):
        discounted_returns(torch.zeros(2, 3), torch.zeros(2, 4), 0.9)


def test_normalize_ignores_padding():
    rewards, _, mask, _, _ = _batch(3)
    out = normalize(rewards, mask)
    for t in range(out.shape[0]):
        valid = out[t][mask[t] > 0]
        assert abs(valid.mean().item()) < 1e-9
        assert abs(valid.std(unbiased=False).item() - 1.0) < 1e-6
    assert (out[mask == 0] == 0).all()


def test_baseline_time_feature_restarts_every_episode():
    obs = torch.randn(1, 2, 5, 3)
    times = torch.arange(5).expand(1, 2, 5)
    feats = LinearFeatureBaseline.features(obs, times)
    # time features (after obs and obs^2) are identical for both episodes: t restarts at 0
    torch.testing.assert_close(feats[0, 0, :, 6:], feats[0, 1, :, 6:])
    assert feats[0, 1, 0, 6].item() == 0.0


def test_baseline_fits_each_task_separately_and_ignores_padding():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(2, 4, 6, 2, generator=g, dtype=torch.float64)
    times = torch.arange(6).expand(2, 4, 6)
    base = LinearFeatureBaseline(reg_coeff=1e-10)
    true_w = torch.randn(2, 8, generator=g, dtype=torch.float64)
    targets = base.predict(true_w, obs, times)
    mask = torch.ones(2, 4, 6, dtype=torch.float64)
    mask[1, 2, 3:] = 0.0
    targets = targets * mask + 1e3 * (1 - mask)  # garbage on padding must not matter
    values = base.fit_predict(obs, targets, mask)
    # an exact linear target is recovered (up to the conditioning of the cubic time features)
    torch.testing.assert_close(values, targets * mask, atol=1e-4, rtol=1e-4)


def test_cherry_linear_value_counts_time_over_the_whole_batch_which_is_why_we_have_our_own():
    # two episodes of 5 steps, flattened as cherry expects: its time feature runs 0..9
    states = torch.zeros(10, 3)
    theirs = cherry.models.robotics.LinearValue(3)._features(states)
    ours = LinearFeatureBaseline.features(states.reshape(2, 5, 3), torch.arange(5).expand(2, 5))
    assert theirs[5, 6].item() == pytest.approx(0.05)  # step 0 of episode 2 counted as t = 5
    assert ours[1, 0, 6].item() == 0.0


def test_cherry_discount_has_no_truncation_and_ours_bootstraps():
    rewards = torch.ones(4, 1)
    dones = torch.tensor([[0.0], [0.0], [0.0], [1.0]])  # a time limit, reported as done
    theirs = cherry.td.discount(0.5, rewards, dones)
    ours = discounted_returns(rewards.T, torch.ones(1, 4), 0.5, bootstrap=torch.tensor([2.0]))
    assert theirs[-1].item() == 1.0  # cherry can only treat the cut as terminal
    assert ours[0, -1].item() == 2.0  # 1 + 0.5 * V(s_4)


def test_baseline_of_non_finite_episodes_is_nan_so_the_learner_rejects_the_step():
    base = LinearFeatureBaseline()
    obs = torch.randn(2, 3, 4, 2)
    obs[1, 0, 2] = float("nan")
    values = base.fit_predict(obs, torch.randn(2, 3, 4), torch.ones(2, 3, 4))
    assert torch.isnan(values).all()


def test_baseline_fits_ant_sized_features_for_many_tasks_on_two_threads():
    # Ant's 105 observation dims make 214 features; torch's batched LU solve fails at this size
    # on two CPU threads. The fit must still be the ridge solution, task by task.
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(20, 2, 50, 105, generator=g, dtype=torch.float64)
    returns = torch.randn(20, 2, 50, generator=g, dtype=torch.float64)
    mask = torch.ones(20, 2, 50, dtype=torch.float64)
    base = LinearFeatureBaseline()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        weights = base.fit(obs, returns, mask)
    finally:
        torch.set_num_threads(threads)
    times = torch.arange(50).expand(2, 50)
    for task in (0, 19):
        x = base.features(obs[task], times).flatten(0, 1)
        a = x.T @ x + base.reg_coeff * torch.eye(x.shape[-1], dtype=x.dtype)
        expected = torch.linalg.solve(a, x.T @ returns[task].flatten())
        torch.testing.assert_close(weights[task], expected, atol=1e-8, rtol=1e-6)
