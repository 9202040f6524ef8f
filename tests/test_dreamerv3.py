"""DreamerV3 core: distributions, RSSM losses, returns, Plan2Explore, acting and checkpoints on the tiny CPU preset."""

import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from worldrl.agents.dreamerv3 import DreamerV3, load_dreamerv3_config
from worldrl.agents.dreamerv3.behavior import ActorCritic, ReturnNormalizer, lambda_returns
from worldrl.agents.dreamerv3.networks import OneHotCategorical, TwoHot, symexp, symlog, symlog_bins, two_hot
from worldrl.agents.dreamerv3.plan2explore import Plan2Explore
from worldrl.agents.dreamerv3.rssm import RSSM
from worldrl.agents.dreamerv3.world_model import WorldModel

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "agents"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(*overrides: str):
    return load_dreamerv3_config(PRESETS / "dreamerv3_cpu.yaml", list(overrides))


@pytest.fixture(scope="module")
def cartpole_batch():
    """Two real cartpole sequences of 12 steps at 32x32, in the replay's sequence format."""
    env = gym.make("worldrl/dmc-cartpole_balance-v0", size=32)
    env.action_space.seed(0)
    steps = {key: [] for key in ("image", "action", "reward", "is_first", "is_last", "is_terminal")}
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        action, reward = np.zeros(1, np.float32), 0.0
        for t in range(12):
            for key, value in zip(steps, (obs, action, reward, t == 0, False, False)):
                steps[key].append(value)
            action = env.action_space.sample().astype(np.float32)
            obs, reward, *_ = env.step(action)
    env.close()
    return {key: np.asarray(value).reshape(2, 12, *np.asarray(value[0]).shape) for key, value in steps.items()}


def test_symlog_symexp_are_inverse():
    x = torch.tensor([-1e6, -50.0, -1.0, -1e-3, 0.0, 1e-3, 1.0, 50.0, 1e6], dtype=torch.float64)
    torch.testing.assert_close(symexp(symlog(x)), x)
    torch.testing.assert_close(symlog(symexp(x[2:-2])), x[2:-2])


def test_two_hot_mean_equals_the_encoded_value():
    bins = symlog_bins(255)
    values = torch.tensor([-300.0, -7.3, -1.0, 0.0, 0.123, 2.5, 42.0, 1234.5])
    encoding = two_hot(symlog(values), bins)
    torch.testing.assert_close(encoding.sum(-1), torch.ones(len(values)))
    assert ((encoding > 0).sum(-1) <= 2).all()
    dist = TwoHot(encoding.clamp_min(1e-30).log(), bins)
    torch.testing.assert_close(dist.mean, values, rtol=1e-4, atol=1e-4)


def test_unimix_keeps_every_class_above_its_share():
    logits = torch.tensor([[50.0, -50.0, -50.0, -50.0], [0.0, 0.0, 0.0, 0.0]])
    probs = OneHotCategorical(logits, unimix=0.01).probs
    assert probs.min() >= 0.01 / 4 - 1e-7
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))


def test_straight_through_sample_passes_gradients():
    logits = torch.randn(3, 32, 32, requires_grad=True)
    sample = OneHotCategorical(logits).sample(torch.Generator().manual_seed(0))
    assert torch.equal(sample.detach().sum(-1), torch.ones(3, 32))
    assert set(sample.detach().unique().tolist()) <= {0.0, 1.0}
    (sample * torch.randn(3, 32, 32)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_kl_balancing_free_bits_and_stop_gradients():
    rssm = RSSM(embed_dim=4, action_dim=2, deter=8, units=8, stoch=4, classes=4)
    logits = torch.randn(5, 4, 4)
    dyn, rep, kl = rssm.kl_losses({"logits": logits}, {"logits": logits.clone()}, free_nats=1.0)
    torch.testing.assert_close(dyn, torch.ones(5))
    torch.testing.assert_close(rep, torch.ones(5))
    assert kl.abs().max() < 1e-5
    post = (torch.randn(5, 4, 4) * 5).requires_grad_()
    prior = torch.randn(5, 4, 4, requires_grad=True)
    dyn, rep, kl = rssm.kl_losses({"logits": post}, {"logits": prior}, free_nats=1.0)
    assert (kl > 1).all() and torch.allclose(dyn, kl) and torch.allclose(rep, kl)
    (grad_post_dyn, grad_prior_dyn) = torch.autograd.grad(dyn.sum(), [post, prior], allow_unused=True)
    (grad_post_rep, grad_prior_rep) = torch.autograd.grad(rep.sum(), [post, prior], allow_unused=True)
    assert grad_post_dyn is None and grad_prior_dyn.abs().sum() > 0
    assert grad_prior_rep is None and grad_post_rep.abs().sum() > 0


@pytest.mark.parametrize("rssm_inputs", ["joint", "separate"])
def test_world_model_loss_decreases_on_real_frames(rssm_inputs, cartpole_batch):
    torch.manual_seed(0)
    config = tiny_config(f"agent.world_model.rssm_inputs={rssm_inputs}")
    model = WorldModel(config.world_model, action_dim=1, image_shape=(32, 32, 3))
    batch = DreamerV3(config, (32, 32, 3), 1).to_tensors(cartpole_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        loss, metrics, post = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert post["deter"].shape == (2, 12, 64) and post["stoch"].shape == (2, 12, 8, 8)
    assert set(metrics) >= {"wm/image_loss", "wm/reward_loss", "wm/cont_loss", "wm/dyn_loss", "wm/rep_loss"}
    assert np.mean(losses[-5:]) < 0.7 * losses[0]


def test_imagination_has_the_horizons_length():
    agent = DreamerV3(tiny_config("agent.behavior.horizon=7"), (32, 32, 3), 3, discrete=True)
    start = agent.world_model.rssm.initial(5)
    traj, actions = agent.behavior.imagine(agent.world_model.rssm, start)
    assert traj["deter"].shape == (8, 5, 64) and traj["stoch"].shape == (8, 5, 8, 8)
    assert actions.shape == (7, 5, 3)
    torch.testing.assert_close(traj["deter"][0], start["deter"])


def test_lambda_return_matches_a_hand_computed_example():
    reward = torch.tensor([[1.0], [2.0]])
    value = torch.tensor([[0.5], [1.0], [3.0]])
    discount = torch.tensor([[0.9], [0.8]])
    # R_1 = 2 + 0.8 * (0.5 * 3 + 0.5 * 3) = 4.4;  R_0 = 1 + 0.9 * (0.5 * 1 + 0.5 * 4.4) = 3.43
    torch.testing.assert_close(lambda_returns(reward, value, discount, lam=0.5), torch.tensor([[3.43], [4.4]]))
    torch.testing.assert_close(lambda_returns(reward, value, discount, lam=1.0),
                               torch.tensor([[1 + 0.9 * (2 + 0.8 * 3)], [2 + 0.8 * 3]]))


def test_return_normalizer_tracks_the_percentile_range():
    returns = torch.arange(101.0)
    exact = ReturnNormalizer(decay=0.0)
    assert exact(returns).item() == pytest.approx(90.0)
    assert exact.low.item() == pytest.approx(5.0) and exact.high.item() == pytest.approx(95.0)
    ema = ReturnNormalizer(decay=0.99)
    assert ema(returns).item() == 1.0  # range 0.9 after one EMA step: clamped to 1
    for _ in range(2000):
        ema(returns)
    assert ema.scale.item() == pytest.approx(90.0, rel=1e-3)
    assert ReturnNormalizer(decay=0.0)(torch.full((50,), 3.0)).item() == 1.0


def test_plan2explore_disagreement_is_higher_on_unseen_latents():
    torch.manual_seed(0)
    config = tiny_config()
    rssm = RSSM(embed_dim=4, action_dim=2, deter=16, units=16, stoch=4, classes=4)
    p2e = Plan2Explore(rssm, action_dim=2, config=config.plan2explore)
    seen = {"deter": torch.randn(8, 10, 16).tanh(),
            "stoch": torch.nn.functional.one_hot(torch.randint(0, 2, (8, 10, 4)), 4).float()}
    action, is_first = torch.zeros(8, 10, 2), torch.zeros(8, 10, dtype=torch.bool)

    def disagreement(state):
        feat = rssm.feat(state).transpose(0, 1)
        return p2e.reward(feat, torch.zeros(feat.shape[0] - 1, feat.shape[1], 2)).mean().item()

    unseen = {"deter": -seen["deter"], "stoch": torch.nn.functional.one_hot(torch.randint(2, 4, (8, 10, 4)), 4).float()}
    before = disagreement(seen)
    optimizer = torch.optim.Adam(p2e.parameters(), lr=1e-3)
    for _ in range(150):
        loss, _ = p2e.loss(seen, action, is_first, rssm)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after_seen, after_unseen = disagreement(seen), disagreement(unseen)
    assert 0 < after_seen < 0.5 * before
    assert after_unseen > 3 * after_seen


@pytest.mark.parametrize("space", [gym.spaces.Discrete(4), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)])
def test_discrete_and_continuous_actions(space, cartpole_batch):
    config = tiny_config("agent.behavior.disagreement_weight=1")
    agent = DreamerV3.from_spaces(config, gym.spaces.Box(0, 255, (32, 32, 3), np.uint8), space)
    batch = dict(cartpole_batch, action=np.zeros((2, 12, agent.action_dim), np.float32))
    metrics = agent.train_step(batch)
    assert all(np.isfinite(v) for v in metrics.values())
    assert {"wm/loss", "plan2explore/loss", "behavior/disagreement_return", "behavior/actor_loss"} <= set(metrics)
    actions, state = agent.act({"image": cartpole_batch["image"][:, 0], "is_first": np.ones(2, bool)})
    assert actions.shape == (2, agent.action_dim) and actions.dtype == np.float32
    if isinstance(space, gym.spaces.Discrete):
        assert agent.discrete and np.array_equal(actions.sum(1), np.ones(2)) and set(np.unique(actions)) <= {0, 1}
    else:
        assert not agent.discrete and np.abs(actions).max() <= 1.0


@pytest.mark.parametrize("actor_grad", ["backprop", "reinforce"])
def test_continuous_actor_gradient_goes_through_the_dynamics_only_for_backprop(actor_grad, cartpole_batch):
    agent = DreamerV3(tiny_config(f"agent.behavior.actor_grad={actor_grad}"), (32, 32, 3), 1)
    torch.nn.init.normal_(agent.world_model.reward_head.out.weight)  # zero at init: no reward to differentiate
    data = agent.to_tensors(cartpole_batch)
    _, _, post = agent.world_model.loss(data)
    start = {key: value.detach().flatten(0, 1) for key, value in post.items()}
    not_terminal = torch.ones(len(start["deter"]), dtype=torch.bool)
    actor_loss, _, _, _ = agent.behavior.loss(agent.world_model.rssm, agent.world_model.cont_logits,
                                              agent.imagined_rewards, start, not_terminal)
    rssm_params = list(agent.world_model.rssm.parameters())
    rssm_grads = torch.autograd.grad(actor_loss, rssm_params, allow_unused=True, retain_graph=True)
    actor_grads = torch.autograd.grad(actor_loss, list(agent.behavior.actor.parameters()), allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in actor_grads)
    reaches_dynamics = any(g is not None and g.abs().sum() > 0 for g in rssm_grads)
    assert reaches_dynamics == (actor_grad == "backprop")


def test_actor_grad_and_rssm_inputs_settings_are_checked():
    with pytest.raises(ValueError, match="inputs must be"):
        DreamerV3(tiny_config("agent.world_model.rssm_inputs=mixed"), (32, 32, 3), 1)
    with pytest.raises(ValueError, match="actor_grad must be"):
        DreamerV3(tiny_config("agent.behavior.actor_grad=sideways"), (32, 32, 3), 1)
    with pytest.raises(ValueError, match="needs continuous actions"):
        DreamerV3(tiny_config("agent.behavior.actor_grad=backprop"), (32, 32, 3), 4, discrete=True)


def test_vector_observations_and_bf16(cartpole_batch):
    config = tiny_config("agent.bf16=true")
    agent = DreamerV3(config, (32, 32, 3), 1, vector_dim=5)
    batch = dict(cartpole_batch, state=np.random.default_rng(0).standard_normal((2, 12, 5)).astype(np.float32))
    metrics = agent.train_step(batch)
    assert np.isfinite(metrics["wm/vector_loss"]) and np.isfinite(metrics["behavior/actor_loss"])


def test_act_resets_the_state_of_envs_that_start_an_episode(cartpole_batch):
    agent = DreamerV3(tiny_config(), (32, 32, 3), 1)
    images = cartpole_batch["image"]
    generator = torch.Generator().manual_seed(0)
    _, state = agent.act({"image": images[:, 0], "is_first": np.ones(2, bool)}, None, generator=generator)
    for t in range(1, 4):
        _, state = agent.act({"image": images[:, t], "is_first": np.zeros(2, bool)}, state, generator=generator)
    obs = {"image": images[:, 4], "is_first": np.array([True, False])}
    _, carried = agent.act(obs, state, generator=generator)
    _, fresh = agent.act(obs, None, generator=generator)
    torch.testing.assert_close(carried["latent"]["logits"][0], fresh["latent"]["logits"][0])
    torch.testing.assert_close(carried["latent"]["deter"][0], fresh["latent"]["deter"][0])
    assert not torch.allclose(carried["latent"]["deter"][1], fresh["latent"]["deter"][1])


def test_state_dict_round_trip_gives_identical_actions_and_updates(cartpole_batch):
    config = tiny_config("agent.behavior.disagreement_weight=1")
    agent = DreamerV3(config, (32, 32, 3), 1)
    agent.train_step(cartpole_batch)
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = DreamerV3(tiny_config("agent.behavior.disagreement_weight=1", "agent.seed=7"), (32, 32, 3), 1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.updates == 1
    obs = {"image": cartpole_batch["image"][:, 0], "is_first": np.ones(2, bool)}
    for explore in (True, False):
        a, _ = agent.act(obs, None, explore, generator=torch.Generator().manual_seed(3))
        b, _ = restored.act(obs, None, explore, generator=torch.Generator().manual_seed(3))
        np.testing.assert_array_equal(a, b)
    results = []
    for model in (agent, restored):
        torch.manual_seed(11)
        results.append(model.train_step(cartpole_batch))
    assert results[0] == results[1]


@pytest.mark.parametrize("preset", sorted(path.stem for path in PRESETS.glob("dreamerv3*.yaml")))
def test_every_preset_gives_its_latent_imagination_and_disagreement_shapes(preset):
    """On the meta device (shapes only, no memory or compute): the Table E.3 Atari preset has 300M parameters."""
    config = load_dreamerv3_config(PRESETS / f"{preset}.yaml", [])
    wm, b = config.world_model, config.behavior
    with torch.device("meta"):
        world_model = WorldModel(wm, 6, (64, 64, 3), None)
        plan2explore = Plan2Explore(world_model.rssm, 6, config.plan2explore)
        behavior = ActorCritic(world_model.rssm.feat_dim, 6, True, b, {"reward": 1.0, "disagreement": 1.0})
        batch = {"image": torch.zeros(2, 3, 64, 64, 3, dtype=torch.uint8), "action": torch.zeros(2, 3, 6),
                 "reward": torch.zeros(2, 3), **{key: torch.zeros(2, 3, dtype=torch.bool)
                                                 for key in ("is_first", "is_last", "is_terminal")}}
        loss, _, post = world_model.loss(batch)
        traj, actions = behavior.imagine(world_model.rssm, {key: value[:, -1] for key, value in post.items()})
        disagreement = plan2explore.reward(world_model.rssm.feat(traj), actions)
    assert loss.shape == () and post["deter"].shape == (2, 3, wm.deter)
    assert post["stoch"].shape == post["logits"].shape == (2, 3, wm.stoch, wm.classes)
    assert traj["deter"].shape == (b.horizon + 1, 2, wm.deter) and actions.shape == (b.horizon, 2, 6)
    assert disagreement.shape == (b.horizon, 2)
