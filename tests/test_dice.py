"""Exact (not statistical) checks of the DiCE and LVC surrogates in metarl.dice.

A tiny MDP (2 states, 2 actions, horizon 3, one state-action pair that may end the episode early)
has few enough trajectories to enumerate them all. For a surrogate ``L`` the expectation of its
derivatives is then a finite sum, ``E[∇^k L] = sum_tau ⊥p_theta(tau) ∇^k L(tau)`` (probabilities
detached), and is compared with the derivatives of the true expected return
``J(theta) = sum_tau p_theta(tau) R(tau)`` (probabilities differentiable), which in turn is checked
against an independent dynamic-programming solution of the MDP.

ProMP's decomposition ``∇²J = H1 + H2 + H12 + H12^T`` is computed term by term from per-step
log-probability derivatives and the exact ``∇Q``, so the tests state exactly what each surrogate's
Hessian estimates: DiCE all of it, LVC ``H1 + H2``, MAML-TRPO's vanilla surrogate ``H2`` only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import hessian, jacobian

from metarl.dice import dice_loss, dice_objective, lvc_loss, lvc_objective, magic_box

DTYPE = torch.float64
S, A, H = 2, 2, 3
NUM_PARAMS = S * A
RHO0 = torch.tensor([0.6, 0.4], dtype=DTYPE)
TRANSITIONS = torch.tensor([[[0.7, 0.3], [0.2, 0.8]], [[0.5, 0.5], [0.9, 0.1]]], dtype=DTYPE)
# Taking action 1 in state 1 ends the episode with probability 0.5: some trajectories are shorter.
TERMINATION = torch.tensor([[0.0, 0.0], [0.0, 0.5]], dtype=DTYPE)
REWARD = torch.tensor([[1.0, -0.5], [2.0, 0.3]], dtype=DTYPE)
# Arbitrary, state- and time-dependent baseline values b_t(s).
BASELINE = torch.tensor([[0.4, -1.3], [2.1, 0.7], [-0.6, 1.5]], dtype=DTYPE)
# Padding garbage: a correct implementation never sees it.
PAD_REWARD, PAD_VALUE = 7.0, -5.0
THETA = torch.tensor([0.3, -0.4, -0.2, 0.5], dtype=DTYPE)  # softmax logits [S, A], flattened
GAMMAS = [1.0, 0.9]
EXACT = {"atol": 1e-10, "rtol": 1e-9}

Surrogate = Callable[[Tensor], Tensor]  # log-probabilities [N, H] -> per-episode values [N]


@dataclass(frozen=True)
class Trajectories:
    """Every trajectory of the MDP, padded to the horizon: tensors shaped [N, H] and [N]."""

    states: Tensor
    actions: Tensor
    mask: Tensor
    rewards: Tensor
    env_prob: Tensor  # product of the initial-state, transition and termination probabilities


def _enumerate() -> Trajectories:
    rows: list[tuple[list[int], list[int], float]] = []

    def visit(t: int, states: list[int], actions: list[int], prob: float) -> None:
        s = states[-1]
        for a in range(A):
            acts = [*actions, a]
            if t == H - 1:
                rows.append((states, acts, prob))
                continue
            end = float(TERMINATION[s, a])
            if end > 0:
                rows.append((states, acts, prob * end))
            for s_next in range(S):
                visit(
                    t + 1,
                    [*states, s_next],
                    acts,
                    prob * (1 - end) * float(TRANSITIONS[s, a, s_next]),
                )

    for s0 in range(S):
        visit(0, [s0], [], float(RHO0[s0]))

    n = len(rows)
    states = torch.zeros(n, H, dtype=torch.long)
    actions = torch.zeros(n, H, dtype=torch.long)
    mask = torch.zeros(n, H, dtype=DTYPE)
    for i, (st, ac, _) in enumerate(rows):
        states[i, : len(ac)] = torch.tensor(st)
        actions[i, : len(ac)] = torch.tensor(ac)
        mask[i, : len(ac)] = 1.0
    rewards = torch.where(mask > 0, REWARD[states, actions], PAD_REWARD)
    env_prob = torch.tensor([p for _, _, p in rows], dtype=DTYPE)
    return Trajectories(states, actions, mask, rewards, env_prob)


TRAJ = _enumerate()


def log_probs(theta: Tensor) -> Tensor:
    """[N, H] log pi(a_t|s_t); padded steps hold log pi(0|0), differentiable garbage.

    ``theta`` is ``[S * A]``, or ``[N, S * A]`` for a separate copy per trajectory.
    """
    table = torch.log_softmax(theta.reshape(*theta.shape[:-1], S, A), dim=-1)
    if theta.dim() == 1:
        return table[TRAJ.states, TRAJ.actions]
    return table[torch.arange(theta.shape[0])[:, None], TRAJ.states, TRAJ.actions]


def traj_prob(theta: Tensor) -> Tensor:
    return TRAJ.env_prob * torch.exp((log_probs(theta) * TRAJ.mask).sum(dim=-1))


def discounts(gamma: float) -> Tensor:
    return gamma ** torch.arange(H, dtype=DTYPE)


def returns_to_go(gamma: float) -> Tensor:
    """[N, H] G_t = sum_{t' >= t} gamma^t' r_t' (discounted from the start, valid steps only)."""
    discounted = TRAJ.rewards * TRAJ.mask * discounts(gamma)
    return discounted.flip(-1).cumsum(-1).flip(-1)


def baseline_values() -> Tensor:
    """[N, H] b_t(s_t), with garbage on padded steps."""
    return torch.where(TRAJ.mask > 0, BASELINE[torch.arange(H), TRAJ.states], PAD_VALUE)


def expected_return(theta: Tensor, gamma: float) -> Tensor:
    """J(theta) by enumeration, with differentiable trajectory probabilities."""
    ret = (TRAJ.rewards * TRAJ.mask * discounts(gamma)).sum(dim=-1)
    return (traj_prob(theta) * ret).sum()


def dynamic_programming(theta: Tensor, gamma: float) -> tuple[Tensor, Tensor]:
    """J(theta) and the table Q_t(s, a) [H, S, A] by backward induction (no enumeration)."""
    pi = torch.softmax(theta.view(S, A), dim=-1)
    value = torch.zeros(S, dtype=DTYPE)
    qs = []
    for _ in range(H):
        q = REWARD + gamma * (1 - TERMINATION) * (TRANSITIONS @ value)
        value = (pi * q).sum(dim=-1)
        qs.append(q)
    return RHO0 @ value, torch.stack(qs[::-1])


def expectation(surrogate: Surrogate) -> Callable[[Tensor], Tensor]:
    """theta -> sum_tau ⊥p_theta(tau) L(tau; theta): derivatives are E[∇^k L] exactly."""

    def fn(theta: Tensor) -> Tensor:
        return (traj_prob(theta).detach() * surrogate(log_probs(theta))).sum()

    return fn


def per_sample_derivatives(surrogate: Surrogate) -> tuple[Tensor, Tensor]:
    """Each trajectory's own gradient [N, P] and Hessian [N, P, P] of the surrogate at THETA."""
    thetas = THETA.expand(len(TRAJ.env_prob), NUM_PARAMS).clone().requires_grad_()
    (grads,) = torch.autograd.grad(surrogate(log_probs(thetas)).sum(), thetas, create_graph=True)
    rows = [
        torch.autograd.grad(grads[:, j].sum(), thetas, retain_graph=True)[0]
        for j in range(NUM_PARAMS)
    ]
    return grads.detach(), torch.stack(rows, dim=1)


def third_derivative(fn: Callable[[Tensor], Tensor], theta: Tensor) -> Tensor:
    return jacobian(lambda th: hessian(fn, th, create_graph=True), theta)


def dice(gamma: float, with_baseline: bool) -> Surrogate:
    values = baseline_values() if with_baseline else None
    return lambda lp: dice_objective(
        lp, TRAJ.rewards, TRAJ.mask, gamma, values=values, reduction="none"
    )


def vanilla_pg(gamma: float) -> Surrogate:
    """MAML-TRPO's inner surrogate sum_t log pi(a_t|s_t) * G_t (G_t detached)."""
    advantages = returns_to_go(gamma)
    return lambda lp: (lp * advantages * TRAJ.mask).sum(dim=-1)


def lvc(gamma: float, with_baseline: bool) -> Surrogate:
    advantages = returns_to_go(gamma)
    if with_baseline:
        advantages = advantages - discounts(gamma) * baseline_values()
    return lambda lp: lvc_objective(lp, advantages, TRAJ.mask, reduction="none")


def promp_hessian_terms(gamma: float) -> tuple[Tensor, Tensor, Tensor]:
    """ProMP's H1, H2, H12 (Rothfuss et al. 2019) at THETA, from per-step derivatives.

    H1 = E[sum_t ∇l_t ∇l_t^T G_t], H2 = E[sum_t ∇²l_t G_t], H12 = E[sum_t ∇l_t gamma^t ∇Q_t^T].
    """
    weight = traj_prob(THETA).unsqueeze(-1) * TRAJ.mask  # [N, H]

    # Derivatives of the log-softmax table [S, A] first, then looked up per step: cheap.
    def table(th: Tensor) -> Tensor:
        return torch.log_softmax(th.view(S, A), dim=-1)

    grad_l = jacobian(table, THETA)[TRAJ.states, TRAJ.actions]  # [N, H, P]
    hess_l = jacobian(lambda th: jacobian(table, th, create_graph=True), THETA)
    hess_l = hess_l[TRAJ.states, TRAJ.actions]  # [N, H, P, P]
    grad_q = jacobian(lambda th: dynamic_programming(th, gamma)[1], THETA)  # [H, S, A, P]
    grad_q = grad_q[torch.arange(H), TRAJ.states, TRAJ.actions] * discounts(gamma)[:, None]
    g = weight * returns_to_go(gamma)
    h1 = torch.einsum("nt,nti,ntj->ij", g, grad_l, grad_l)
    h2 = torch.einsum("nt,ntij->ij", g, hess_l)
    h12 = torch.einsum("nt,nti,ntj->ij", weight, grad_l, grad_q)
    return h1, h2, h12


# --- the reference itself ------------------------------------------------------------------------


def test_enumeration_covers_every_trajectory_and_matches_dynamic_programming() -> None:
    assert TRAJ.mask[:, -1].min() == 0, "the MDP must have early-terminating trajectories"
    torch.testing.assert_close(traj_prob(THETA).sum(), torch.tensor(1.0, dtype=DTYPE), **EXACT)
    for gamma in GAMMAS:
        enumerated = lambda th, g=gamma: expected_return(th, g)  # noqa: E731
        by_dp = lambda th, g=gamma: dynamic_programming(th, g)[0]  # noqa: E731
        torch.testing.assert_close(enumerated(THETA), by_dp(THETA), **EXACT)
        torch.testing.assert_close(jacobian(enumerated, THETA), jacobian(by_dp, THETA), **EXACT)
        torch.testing.assert_close(hessian(enumerated, THETA), hessian(by_dp, THETA), **EXACT)


@pytest.mark.parametrize("gamma", GAMMAS)
def test_promp_decomposition_is_the_true_hessian(gamma: float) -> None:
    h1, h2, h12 = promp_hessian_terms(gamma)
    true_hessian = hessian(lambda th: expected_return(th, gamma), THETA)
    torch.testing.assert_close(h1 + h2 + h12 + h12.T, true_hessian, **EXACT)
    # Every term matters here, so the comparisons below cannot pass vacuously.
    for term in (h1, h2, h12 + h12.T):
        assert term.norm() > 1e-2


# --- DiCE ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_baseline", [False, True], ids=["no_baseline", "baseline"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_dice_derivatives_of_every_order_are_exact(gamma: float, with_baseline: bool) -> None:
    surrogate = expectation(dice(gamma, with_baseline))
    true_return = lambda th: expected_return(th, gamma)  # noqa: E731
    torch.testing.assert_close(surrogate(THETA), true_return(THETA), **EXACT)
    torch.testing.assert_close(jacobian(surrogate, THETA), jacobian(true_return, THETA), **EXACT)
    torch.testing.assert_close(hessian(surrogate, THETA), hessian(true_return, THETA), **EXACT)
    torch.testing.assert_close(
        third_derivative(surrogate, THETA), third_derivative(true_return, THETA), **EXACT
    )


def test_dice_baseline_term_is_zero_in_value_and_in_expectation_but_not_per_sample() -> None:
    gamma = 0.9
    plain, loaded = dice(gamma, False), dice(gamma, True)
    lp = log_probs(THETA)
    # Forward value: the discounted return, with or without the baseline.
    torch.testing.assert_close(plain(lp), loaded(lp), **EXACT)
    torch.testing.assert_close(
        plain(lp), (TRAJ.rewards * TRAJ.mask * discounts(gamma)).sum(-1), **EXACT
    )
    # Per trajectory the baseline changes the gradient and Hessian (it is a control variate)...
    weight = traj_prob(THETA)
    for plain_d, loaded_d in zip(
        per_sample_derivatives(plain), per_sample_derivatives(loaded), strict=True
    ):
        difference = plain_d - loaded_d
        assert difference.abs().max() > 1e-2
        # ...but not their expectation (checked at every order in the test above).
        expected = torch.tensordot(weight, difference, dims=1)
        torch.testing.assert_close(expected, torch.zeros_like(expected), **EXACT)


def test_dice_baseline_form_lowers_second_order_variance() -> None:
    """Why Mao et al.'s baseline form: an exact instance, not a theorem.

    With the true value function as baseline, DiCE's original term sum_t (1 - □(l_t)) gamma^t b_t
    and Mao et al.'s sum_t (□(c_{t-1}) - □(c_t)) gamma^t b_t give the same gradient estimator,
    but only the latter also cuts the variance of the Hessian estimator by much.
    """
    gamma = 0.9
    _, q = dynamic_programming(THETA, gamma)
    v = (torch.softmax(THETA.view(S, A), -1) * q).sum(-1)  # V_t(s) [H, S]
    values = v[torch.arange(H), TRAJ.states] * TRAJ.mask

    def original(lp: Tensor) -> Tensor:
        lp = lp * TRAJ.mask
        box_returns = magic_box(lp.cumsum(-1)) * TRAJ.rewards * TRAJ.mask
        return ((box_returns + (1 - magic_box(lp)) * values) * discounts(gamma)).sum(-1)

    def mao(lp: Tensor) -> Tensor:
        return dice_objective(lp, TRAJ.rewards, TRAJ.mask, gamma, values, reduction="none")

    def variance(estimates: Tensor) -> Tensor:
        weight = traj_prob(THETA).view(-1, *([1] * (estimates.dim() - 1)))
        mean = (weight * estimates).sum(0)
        return (weight * (estimates - mean) ** 2).sum()

    (g_plain, h_plain), (g_orig, h_orig), (g_mao, h_mao) = (
        per_sample_derivatives(f) for f in (dice(gamma, False), original, mao)
    )
    torch.testing.assert_close(g_orig, g_mao, **EXACT)
    assert variance(g_mao) < 0.5 * variance(g_plain)
    assert variance(h_mao) < 0.7 * variance(h_orig) < variance(h_plain)


def test_dice_ignores_padding_even_when_it_is_nan() -> None:
    padding = TRAJ.mask == 0
    nan = torch.tensor(float("nan"), dtype=DTYPE)

    def objective(th: Tensor, poison: bool) -> Tensor:
        lp, rewards, values = log_probs(th), TRAJ.rewards, baseline_values()
        if poison:
            lp, rewards, values = (torch.where(padding, nan, x) for x in (lp, rewards, values))
        return dice_objective(lp, rewards, TRAJ.mask, 0.9, values=values)

    theta = THETA.clone().requires_grad_()
    clean, poisoned = objective(theta, False), objective(theta, True)
    torch.testing.assert_close(poisoned, clean, **EXACT)
    (g_clean,) = torch.autograd.grad(clean, theta)
    (g_poisoned,) = torch.autograd.grad(poisoned, theta)
    assert torch.isfinite(g_poisoned).all()
    torch.testing.assert_close(g_poisoned, g_clean, **EXACT)


# --- the vanilla policy-gradient surrogate of MAML-TRPO's inner step ---------------------------


@pytest.mark.parametrize("gamma", GAMMAS)
def test_vanilla_pg_has_exact_gradient_but_misses_curvature(gamma: float) -> None:
    surrogate = expectation(vanilla_pg(gamma))
    true_return = lambda th: expected_return(th, gamma)  # noqa: E731
    torch.testing.assert_close(jacobian(surrogate, THETA), jacobian(true_return, THETA), **EXACT)

    h1, h2, h12 = promp_hessian_terms(gamma)
    pg_hessian, true_hessian = hessian(surrogate, THETA), hessian(true_return, THETA)
    torch.testing.assert_close(pg_hessian, h2, **EXACT)
    # What it misses, and DiCE recovers: every term through which the sampled trajectories
    # depend on theta.
    missing = true_hessian - pg_hessian
    torch.testing.assert_close(missing, h1 + h12 + h12.T, **EXACT)
    assert missing.norm() > 1e-2
    dice_hessian = hessian(expectation(dice(gamma, False)), THETA)
    assert (dice_hessian - pg_hessian).norm() > 1e-2


# --- LVC -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_baseline", [False, True], ids=["no_baseline", "baseline"])
@pytest.mark.parametrize("gamma", GAMMAS)
def test_lvc_gradient_is_exact_and_hessian_is_h1_plus_h2(gamma: float, with_baseline: bool) -> None:
    surrogate = expectation(lvc(gamma, with_baseline))
    true_return = lambda th: expected_return(th, gamma)  # noqa: E731
    torch.testing.assert_close(jacobian(surrogate, THETA), jacobian(true_return, THETA), **EXACT)

    h1, h2, h12 = promp_hessian_terms(gamma)
    lvc_hessian = hessian(surrogate, THETA)
    torch.testing.assert_close(lvc_hessian, h1 + h2, **EXACT)
    # LVC drops exactly the cross terms that DiCE keeps.
    dice_hessian = hessian(expectation(dice(gamma, with_baseline)), THETA)
    torch.testing.assert_close(dice_hessian - lvc_hessian, h12 + h12.T, **EXACT)
    assert (dice_hessian - lvc_hessian).norm() > 1e-2


def test_lvc_forward_value_and_padding() -> None:
    advantages = returns_to_go(0.9)
    per_episode = lvc_objective(log_probs(THETA), advantages, TRAJ.mask, reduction="none")
    torch.testing.assert_close(per_episode, (advantages * TRAJ.mask).sum(-1), **EXACT)
    nan = torch.tensor(float("nan"), dtype=DTYPE)
    poisoned = torch.where(TRAJ.mask == 0, nan, advantages)
    theta = THETA.clone().requires_grad_()
    (g_clean,) = torch.autograd.grad(lvc_objective(log_probs(theta), advantages, TRAJ.mask), theta)
    (g_poisoned,) = torch.autograd.grad(
        lvc_objective(torch.where(TRAJ.mask == 0, nan, log_probs(theta)), poisoned, TRAJ.mask),
        theta,
    )
    torch.testing.assert_close(g_poisoned, g_clean, **EXACT)


# --- API surface -------------------------------------------------------------------------------


def test_magic_box_is_one_with_score_function_derivatives() -> None:
    x = torch.tensor([0.3, -1.2], dtype=DTYPE, requires_grad=True)
    box = magic_box(x)
    torch.testing.assert_close(box, torch.ones(2, dtype=DTYPE), atol=0, rtol=0)
    (first,) = torch.autograd.grad(box.sum(), x, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), x)
    torch.testing.assert_close(first, torch.ones(2, dtype=DTYPE), atol=0, rtol=0)
    torch.testing.assert_close(second, torch.ones(2, dtype=DTYPE), atol=0, rtol=0)


def test_reductions_and_losses_on_a_task_episode_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    shape = (3, 4, 5)  # tasks, episodes, horizon
    lp = torch.randn(shape, generator=gen, dtype=DTYPE).requires_grad_()
    rewards = torch.randn(shape, generator=gen, dtype=DTYPE)
    values = torch.randn(shape, generator=gen, dtype=DTYPE)
    mask = (torch.arange(5) < torch.randint(1, 6, (3, 4, 1), generator=gen)).to(DTYPE)
    per_episode = dice_objective(lp, rewards, mask, 0.95, values, reduction="none")
    assert per_episode.shape == (3, 4)
    torch.testing.assert_close(
        per_episode, (rewards * mask * 0.95 ** torch.arange(5, dtype=DTYPE)).sum(-1), **EXACT
    )
    torch.testing.assert_close(dice_objective(lp, rewards, mask, 0.95, values), per_episode.mean())
    torch.testing.assert_close(
        dice_objective(lp, rewards, mask, 0.95, values, reduction="sum"), per_episode.sum()
    )
    torch.testing.assert_close(
        dice_loss(lp, rewards, mask, 0.95, values), -dice_objective(lp, rewards, mask, 0.95, values)
    )
    lvc_per_episode = lvc_objective(lp, rewards, mask, reduction="none")
    assert lvc_per_episode.shape == (3, 4)
    torch.testing.assert_close(lvc_loss(lp, rewards, mask), -lvc_per_episode.mean())
    # A boolean mask means the same as a float one.
    torch.testing.assert_close(
        dice_objective(lp, rewards, mask.bool(), 0.95, values),
        dice_objective(lp, rewards, mask, 0.95, values),
    )


def test_constants_are_detached() -> None:
    lp = torch.zeros(2, 3, dtype=DTYPE, requires_grad=True)
    rewards = torch.ones(2, 3, dtype=DTYPE, requires_grad=True)
    values = torch.ones(2, 3, dtype=DTYPE, requires_grad=True)
    mask = torch.ones(2, 3, dtype=DTYPE)
    objective = dice_objective(lp, rewards, mask, 0.9, values) + lvc_objective(lp, values, mask)
    grads = torch.autograd.grad(objective, [lp, rewards, values], allow_unused=True)
    assert grads[0] is not None and grads[1] is None and grads[2] is None


def _batch(shape: tuple[int, ...] = (2, 3)) -> Tensor:
    return torch.zeros(shape, dtype=DTYPE)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: dice_objective(_batch(), _batch((2, 4)), _batch(), 0.9), "rewards has shape"),
        (lambda: dice_objective(_batch(), _batch(), _batch((3,)), 0.9), "mask has shape"),
        (lambda: dice_objective(_batch(), _batch(), _batch(), 0.9, _batch((3, 2))), "values"),
        (lambda: dice_objective(_batch(()), _batch(()), _batch(()), 0.9), r"\[\.\.\., H\]"),
        (lambda: dice_objective(_batch((2, 0)), _batch((2, 0)), _batch((2, 0)), 0.9), "one step"),
        (
            lambda: dice_objective(torch.zeros(2, 3, dtype=torch.long), _batch(), _batch(), 0.9),
            "floating-point",
        ),
        (lambda: dice_objective(_batch(), _batch(), _batch(), 1.5), "gamma"),
        (lambda: dice_objective(_batch(), _batch(), _batch(), True), "gamma"),
        (lambda: dice_objective(_batch(), _batch(), _batch(), 0.9, reduction="avg"), "reduction"),
        (lambda: dice_loss(_batch(), _batch((2, 4)), _batch(), 0.9), "rewards has shape"),
        (lambda: lvc_objective(_batch(), _batch((3, 2)), _batch()), "advantages has shape"),
        (lambda: lvc_objective(_batch(), _batch(), _batch((2, 1))), "mask has shape"),
        (lambda: lvc_loss(_batch(), _batch(), _batch(), reduction="max"), "reduction"),
    ],
)
def test_invalid_arguments_raise_value_error(call: Callable[[], Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
