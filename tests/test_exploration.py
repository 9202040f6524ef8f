import copy
import io

import numpy as np
import pytest
import torch

from worldrl.exploration import RND, Disagreement, ExplorationBonus, RunningMeanStd, Transition, make_exploration

SHAPE = (16, 16, 3)
FEATURES, ACTIONS = 8, 2


def frames(batch: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 256, (batch, *SHAPE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def frame_transition(batch: int = 4, seed: int = 0) -> Transition:
    return Transition(next_obs=frames(batch, seed))


def feature_transition(batch: int = 16, seed: int = 0, scale: float = 1.0) -> Transition:
    g = torch.Generator().manual_seed(seed)
    features = scale * torch.randn(batch, FEATURES, generator=g)
    action = torch.nn.functional.one_hot(torch.randint(0, ACTIONS, (batch,), generator=g), ACTIONS).float()
    next_features = torch.tanh(features + action.sum(1, keepdim=True))
    return Transition(next_obs=frames(batch, seed), action=action, features=features, next_features=next_features)


def small_rnd(**kwargs) -> RND:
    return RND(SHAPE, hidden=64, embed_dim=32, device="cpu", **kwargs)


def small_disagreement(**kwargs) -> Disagreement:
    return Disagreement(FEATURES, ACTIONS, members=5, hidden=32, lr=1e-3, device="cpu", **kwargs)


BONUSES = {"rnd": (small_rnd, frame_transition), "disagreement": (small_disagreement, feature_transition)}


def make(name: str, seed: int = 0, **kwargs) -> tuple[ExplorationBonus, Transition]:
    build, transition = BONUSES[name]
    torch.manual_seed(seed)
    return build(**kwargs), transition()


def test_rnd_bonus_falls_on_repeated_frames_but_not_on_novel_ones():
    torch.manual_seed(0)
    bonus, seen, novel = RND(SHAPE, normalize=False, device="cpu"), frame_transition(seed=0), frame_transition(seed=1)
    before = bonus.novelty(seen).mean()
    for _ in range(50):
        bonus(seen)
    after = bonus.novelty(seen)
    assert after.mean() < before / 10
    assert bonus.novelty(novel).min() > 3 * after.max()


def test_disagreement_falls_on_repeated_transitions_and_is_higher_on_unseen_ones():
    torch.manual_seed(0)
    bonus, seen = small_disagreement(normalize=False), feature_transition(seed=0)
    unseen = feature_transition(seed=1, scale=3.0)
    before = bonus.novelty(seen).mean()
    for _ in range(100):
        bonus(seen)
    after = bonus.novelty(seen).mean()
    assert after < before / 5
    assert bonus.novelty(unseen).mean() > 5 * after


def test_default_disagreement_is_a_vectorised_ensemble_of_ten():
    bonus = make_exploration("disagreement", feature_dim=FEATURES, action_dim=ACTIONS, device="cpu")
    predictions = bonus.predict(feature_transition(batch=3))
    assert predictions.shape == (10, 3, FEATURES)
    assert not torch.allclose(predictions[0], predictions[1])


def test_running_mean_std_matches_numpy():
    stats = RunningMeanStd()
    chunks = [np.random.default_rng(i).normal(3.0, 2.0, size=n) for i, n in enumerate([5, 1, 40])]
    for chunk in chunks:
        stats.update(torch.from_numpy(chunk).float())
    values = np.concatenate(chunks).astype(np.float32)
    np.testing.assert_allclose(stats.mean.item(), values.mean(), rtol=1e-3)
    np.testing.assert_allclose(stats.var.item(), values.var(), rtol=1e-3)
    assert stats.count.item() == pytest.approx(len(values), abs=1e-3)


def test_reward_is_novelty_over_running_std():
    bonus, transition = make("rnd")
    raw = bonus.novelty(transition)
    reward = bonus(transition, learn=False)
    assert reward.dtype == torch.float32
    torch.testing.assert_close(reward, raw / bonus.stats.std.float())
    assert bonus.stats.count.item() == pytest.approx(len(raw), abs=1e-3)


@pytest.mark.parametrize("name", BONUSES)
def test_state_dict_round_trip_resumes_training_exactly(name):
    original, transition = make(name, seed=0)
    for _ in range(3):
        original(transition)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    assert original.state_dict()["_extra_state"]["optimizer"]["state"]
    restored, _ = make(name, seed=1)
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    torch.testing.assert_close(restored.novelty(transition), original.novelty(transition), rtol=0, atol=0)
    for _ in range(3):
        torch.testing.assert_close(restored(transition), original(transition), rtol=0, atol=0)
    for (key, a), b in zip(original.state_dict().items(), restored.state_dict().values()):
        if key != "_extra_state":
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", BONUSES)
def test_loaded_optimizer_state_is_not_shared_with_the_source(name):
    original, transition = make(name, seed=0)
    original(transition)
    restored, _ = make(name, seed=1)
    restored.load_state_dict(original.state_dict())
    snapshot = copy.deepcopy(restored.optimizer.state_dict())
    original(transition)
    for a, b in zip(snapshot["state"].values(), restored.optimizer.state_dict()["state"].values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("name", BONUSES)
def test_learn_false_leaves_parameters_unchanged(name):
    bonus, transition = make(name)
    before = copy.deepcopy(bonus.state_dict())
    bonus(transition, learn=False)
    for key, value in bonus.state_dict().items():
        if key not in {"_extra_state", "stats.mean", "stats.var", "stats.count"}:
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
    bonus(transition)
    assert any(not torch.equal(p, before[k]) for k, p in bonus.named_parameters())


def test_rnd_trains_only_the_predictor():
    bonus, transition = make("rnd")
    target = copy.deepcopy(bonus.target.state_dict())
    bonus(transition)
    for key, value in bonus.target.state_dict().items():
        torch.testing.assert_close(value, target[key], rtol=0, atol=0)


@pytest.mark.parametrize(
    "next_obs, message",
    [
        (torch.zeros(2, 8, 8, 3, dtype=torch.uint8), r"uint8 \[B, 16, 16, 3\], got torch.uint8 \[2, 8, 8, 3\]"),
        (torch.zeros(2, 16, 16, 3), r"got torch.float32"),
        (torch.zeros(16, 16, 3, dtype=torch.uint8), r"got torch.uint8 \[16, 16, 3\]"),
    ],
)
def test_rnd_rejects_bad_frames(next_obs, message):
    bonus, _ = make("rnd")
    with pytest.raises(ValueError, match=message):
        bonus(Transition(next_obs=next_obs))


@pytest.mark.parametrize("field", ["features", "action", "next_features"])
def test_disagreement_rejects_missing_inputs(field):
    bonus, transition = make("disagreement")
    with pytest.raises(ValueError, match=f"Disagreement {field}: expected a tensor"):
        bonus(Transition(**{**vars(transition), field: None}))


def test_disagreement_rejects_wrong_feature_size():
    bonus, transition = make("disagreement")
    with pytest.raises(ValueError, match=r"expected float \[B, 8\], got torch.float32 \[16, 5\]"):
        bonus(Transition(**{**vars(transition), "features": transition.features[:, :5]}))


def test_make_exploration():
    assert isinstance(make_exploration("rnd", obs_shape=SHAPE, hidden=8, embed_dim=4), RND)
    with pytest.raises(ValueError, match="unknown exploration bonus 'icm'"):
        make_exploration("icm")
