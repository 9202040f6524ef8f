"""Record episodes of a policy in a vector env into a dataset folder.

Each finished episode is written at once (atomically), so a collector that is
killed loses at most the episodes still in progress, and re-running into the
same folder continues the numbering. The env seeds of a run are drawn from
``(seed, episodes already in the folder)``: re-running with the same seed adds
new episodes, not copies of the old ones, and stays reproducible.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from tqdm import tqdm

import worldrl  # noqa: F401  (registers the ids)
from worldrl.data.episode import EpisodeBuilder
from worldrl.data.folder import EpisodeFolder

Policy = Callable[[Any], np.ndarray]


def _select(obs: Any, index: int) -> Any:
    if isinstance(obs, Mapping):
        return {key: value[index] for key, value in obs.items()}
    return obs[index]


def _action_dim(space: gym.Space) -> tuple[int, bool]:
    if isinstance(space, spaces.Discrete):
        return int(space.n), True
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return int(space.shape[0]), False
    raise TypeError(f"episodes store Discrete or 1-D Box actions, not {space}")


def policy_for_env(env_id: str, policy: Any, env_kwargs: Mapping[str, Any] | None = None,
                   seed: int = 0) -> tuple[Policy, dict[str, Any]]:
    """``policy`` (``"random"``, an oracle path, ...) made for ``env_id``, and the env arguments it needs.

    A policy that reads the state gets ``obs_type="pixels+state"`` unless ``env_kwargs`` sets ``obs_type``.
    """
    from worldrl.oracles import as_policy

    env_kwargs = dict(env_kwargs or {})
    probe = gym.make(env_id, **env_kwargs)
    made = as_policy(policy, probe.action_space, seed=seed)
    probe.close()
    required = getattr(made, "required_obs_type", None)
    if required and "obs_type" not in env_kwargs:
        env_kwargs["obs_type"] = required
    return made, env_kwargs


def collect(
    env_id: str,
    policy: Policy,
    episodes: int,
    out: str | Path,
    *,
    num_envs: int = 1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    vectorization_mode: str = "sync",
    policy_name: str = "callable",
    task_id: int | None = None,
    progress: bool = True,
) -> EpisodeFolder:
    """Run ``policy`` in ``num_envs`` copies of ``env_id`` until ``episodes`` episodes finished.

    ``policy`` maps a batch of observations (as the vector env returns them)
    to a batch of actions. Observations must hold pixels (an image, or a dict
    with ``pixels`` and optionally ``state``, which is stored too).
    """
    if episodes < 1 or num_envs < 1:
        raise ValueError(f"episodes and num_envs must be >= 1, got {episodes} and {num_envs}")
    env_kwargs = dict(env_kwargs or {})
    recorded_kwargs = json.loads(json.dumps(env_kwargs))  # as dataset.json will hold them (tuples -> lists)
    folder = EpisodeFolder(out, create=True, metadata={"env_id": env_id, "env_kwargs": recorded_kwargs})
    already = len(folder)
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=vectorization_mode, **env_kwargs)
    try:
        single_space = envs.single_observation_space
        if not (isinstance(single_space, spaces.Box) and len(single_space.shape) == 3) and not (
            isinstance(single_space, spaces.Dict) and "pixels" in single_space.spaces
        ):
            raise ValueError(
                f"{env_id} with {env_kwargs} does not observe pixels ({single_space}); use obs_type='pixels+state'"
            )
        action_dim, discrete = _action_dim(envs.single_action_space)
        seeds = np.random.SeedSequence([seed, already]).generate_state(num_envs).tolist()
        obs, _ = envs.reset(seed=[int(s) for s in seeds])
        builders = [EpisodeBuilder(action_dim, discrete, task_id) for _ in range(num_envs)]
        for i, builder in enumerate(builders):
            builder.add_reset(_select(obs, i))
        returns: list[float] = []
        frames, start = 0, time.perf_counter()
        bar = tqdm(total=episodes, desc=f"collect {env_id}", unit="ep", disable=not progress)
        while len(returns) < episodes:
            actions = np.asarray(policy(obs))
            obs, rewards, terminated, truncated, infos = envs.step(actions)
            frames += num_envs
            for i, builder in enumerate(builders):
                if not builder.started:  # this sub-env was reset by this step (next-step autoreset)
                    builder.add_reset(_select(obs, i))
                    continue
                info = {"task_reward": infos["task_reward"][i]} if "task_reward" in infos else {}
                builder.add_step(actions[i], _select(obs, i), rewards[i], bool(terminated[i]), info)
                if (terminated[i] or truncated[i]) and len(returns) < episodes:
                    info = folder.append(builder.episode())
                    returns.append(info.episode_return)
                    bar.update(1)
                    bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.0f}", ret=f"{np.mean(returns):.1f}")
                if terminated[i] or truncated[i]:
                    builder.clear()
        bar.close()
    finally:
        envs.close()
    folder.metadata.setdefault("collections", []).append(
        {"policy": policy_name, "seed": seed, "num_envs": num_envs, "episodes": episodes, "first": already}
    )
    folder.write_index()
    return folder
