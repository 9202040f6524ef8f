import pytest

import worldrl  # noqa: F401  (registers the ids)


def rollout(env, steps: int, seed: int):
    """Observations and rewards of ``steps`` seeded random actions (resetting when an episode ends)."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards = [obs], []
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            obs, _ = env.reset()
    return observations, rewards


@pytest.fixture
def seeded_rollout():
    return rollout
