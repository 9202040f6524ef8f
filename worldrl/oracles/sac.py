"""State-based SAC task oracles for continuous-control envs (DMC and the other ``obs_type`` suites).

VIPER's expert videos of the control suite come from agents trained on the
low-dimensional state with the task reward. :func:`train_state_oracle`
trains one with Stable-Baselines3's SAC on ``gym.make(env_id,
obs_type="state")`` (no rendering, so training runs at physics speed) and
hyperparameters in the spirit of VIPER and the SB3 zoo's DMC settings.

Layout of ``out_dir``::

    oracle.zip          the final SB3 model (no replay buffer)
    oracle.json         env id, steps, seed, evaluation, training time, hyperparameters
    tb/                 TensorBoard logs (episode returns, losses, entropy coefficient)
    checkpoints/        latest.json -> model_<steps>.zip + replay_<steps>.pkl

Every file is written atomically (temporary file, then ``os.replace``), and
``latest.json`` last, so a run killed at any moment resumes from its last
complete checkpoint: call again with the same arguments (or more ``steps``).

SB3 zips and replay-buffer pickles hold pickled Python objects, and loading
one runs code from it: load only oracle files from a trusted source.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from tqdm import tqdm

from worldrl.atomic import atomic_write, write_json_atomic
from worldrl.oracles.policy import ORACLE_FILE, ORACLE_INFO, SB3Policy, evaluate_policy_return

CHECKPOINTS = "checkpoints"
LATEST = "latest.json"


def default_learning_starts(steps: int) -> int:
    """5000 random steps before learning, as SB3's zoo uses, but at most a tenth of a short run (and >= 100)."""
    return min(5000, max(100, steps // 10))


def train_state_oracle(
    env_id: str,
    steps: int,
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    env_kwargs: Mapping[str, Any] | None = None,
    eval_episodes: int = 20,
    checkpoint_every: int = 10_000,
    learning_starts: int | None = None,
    learning_rate: float = 3e-4,
    batch_size: int = 256,
    buffer_size: int = 1_000_000,
    net_arch: Sequence[int] = (256, 256),
    gamma: float = 0.99,
    tau: float = 0.005,
    train_freq: int = 1,
    gradient_steps: int = 1,
    device: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train (or resume training) a SAC oracle on the state of ``env_id`` for ``steps`` env steps in total.

    Saves a checkpoint (model and replay buffer) every ``checkpoint_every``
    steps and at the end; when ``out_dir`` already holds one, training
    resumes from it and continues its step count (``steps`` is the total, not
    the number of new steps). Entropy is tuned automatically. The replay
    buffer holds ``min(buffer_size, steps)`` transitions, since a larger one
    would never fill. ``learning_starts`` defaults to
    :func:`default_learning_starts`. A resumed run keeps the hyperparameters
    of its checkpoint (``oracle.json`` records the ones used). Returns what it writes to
    ``oracle.json``, including the mean and standard deviation of the return
    of ``eval_episodes`` deterministic episodes (seeds distinct from
    training).
    """
    import worldrl  # noqa: F401  (registers the ids)

    if steps < 1 or checkpoint_every < 1 or eval_episodes < 1:
        raise ValueError(
            f"steps, checkpoint_every and eval_episodes must be >= 1, got {steps}, {checkpoint_every}, {eval_episodes}"
        )
    out = Path(out_dir)
    checkpoints = out / CHECKPOINTS
    env_kwargs = dict(env_kwargs or {})
    if "obs_type" in env_kwargs:
        raise ValueError("env_kwargs must not set obs_type: the oracle always trains on obs_type='state'")
    try:
        env = Monitor(gym.make(env_id, obs_type="state", **env_kwargs))
    except TypeError as error:
        raise ValueError(
            f"{env_id} cannot be made with obs_type='state', which a state oracle needs: {error}"
        ) from None
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise ValueError(f"SAC needs continuous (Box) actions; {env_id} has {env.action_space}")
    learning_starts = default_learning_starts(steps) if learning_starts is None else learning_starts
    tensorboard = str(out / "tb")
    latest = _read_latest(checkpoints, env_id, seed, env_kwargs)
    if latest is not None:
        model = SAC.load(checkpoints / latest["model"], env=env, device=device, tensorboard_log=tensorboard)
        model.load_replay_buffer(checkpoints / latest["replay"])
        model.set_random_seed(seed + model.num_timesteps)
        train_time = float(latest["train_time_s"])
    else:
        model = SAC(
            "MlpPolicy",
            env,
            learning_rate=learning_rate,
            buffer_size=min(buffer_size, steps),
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            ent_coef="auto",
            policy_kwargs={"net_arch": list(net_arch)},
            tensorboard_log=tensorboard,
            seed=seed,
            device=device,
            verbose=0,
        )
        train_time = 0.0
    start = time.monotonic()
    saved_at = latest["num_timesteps"] if latest is not None else None

    def save_checkpoint() -> None:
        nonlocal saved_at
        n = model.num_timesteps
        atomic_write(checkpoints / f"model_{n}.zip", model.save)
        atomic_write(checkpoints / f"replay_{n}.pkl", model.save_replay_buffer)
        record = {
            "env_id": env_id,
            "env_kwargs": env_kwargs,
            "seed": seed,
            "num_timesteps": n,
            "model": f"model_{n}.zip",
            "replay": f"replay_{n}.pkl",
            "train_time_s": train_time + time.monotonic() - start,
        }
        write_json_atomic(checkpoints / LATEST, record)
        for old in [*checkpoints.glob("model_*.zip"), *checkpoints.glob("replay_*.pkl")]:
            if old.name not in (record["model"], record["replay"]):
                old.unlink(missing_ok=True)
        saved_at = n

    remaining = steps - model.num_timesteps
    try:
        if remaining > 0:
            progress_bar = _Progress(steps, checkpoint_every, save_checkpoint, progress, f"SAC {env_id}")
            model.learn(total_timesteps=remaining, callback=progress_bar, reset_num_timesteps=False, tb_log_name="sac")
            if saved_at != model.num_timesteps:
                save_checkpoint()
            train_time += time.monotonic() - start
    finally:
        env.close()
    atomic_write(out / ORACLE_FILE, model.save)

    hyperparameters = {
        "learning_rate": model.learning_rate,
        "batch_size": model.batch_size,
        "buffer_size": model.buffer_size,
        "learning_starts": model.learning_starts,
        "net_arch": list(model.policy_kwargs.get("net_arch", [])),
        "gamma": model.gamma,
        "tau": model.tau,
        "train_freq": model.train_freq.frequency,
        "gradient_steps": model.gradient_steps,
        "ent_coef": "auto",
    }
    eval_seed = seed + 10_000
    evaluation = evaluate_policy_return(
        env_id, SB3Policy(model), episodes=eval_episodes, seed=eval_seed, env_kwargs={**env_kwargs, "obs_type": "state"}
    )
    info = {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "algorithm": "SAC",
        "obs_type": "state",
        "required_obs_type": "pixels+state",
        "steps": int(model.num_timesteps),
        "seed": seed,
        "eval": {"episodes": eval_episodes, "seed": eval_seed, **evaluation},
        "train_time_s": round(train_time, 1),
        "hyperparameters": hyperparameters,
    }
    write_json_atomic(out / ORACLE_INFO, info)
    return info


def _read_latest(checkpoints: Path, env_id: str, seed: int, env_kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    """The latest checkpoint's record, or None; raises if it belongs to another env or seed."""
    path = checkpoints / LATEST
    if not path.is_file():
        return None
    latest = json.loads(path.read_text())
    mine = {"env_id": env_id, "seed": seed, "env_kwargs": json.loads(json.dumps(dict(env_kwargs)))}
    theirs = {key: latest.get(key) for key in mine}
    if mine != theirs:
        raise ValueError(
            f"{checkpoints} holds a checkpoint of {theirs}, not {mine}; use another out_dir or the same arguments"
        )
    for key in ("model", "replay"):
        if not (checkpoints / latest[key]).is_file():
            raise FileNotFoundError(f"{path} names {latest[key]}, which is missing")
    return latest


class _Progress(BaseCallback):
    """A tqdm bar over the total steps (from where a resumed run left off); checkpoints every ``every`` steps."""

    def __init__(self, total: int, every: int, save: Callable[[], None], enabled: bool, description: str):
        super().__init__()
        self.total, self.every, self.save = total, every, save
        self.enabled, self.description = enabled, description
        self.bar = None

    def _on_training_start(self) -> None:
        self.bar = tqdm(
            total=self.total, initial=self.num_timesteps, desc=self.description, unit="step", disable=not self.enabled
        )

    def _on_step(self) -> bool:
        self.bar.update(1)
        if self.num_timesteps % 1000 == 0 and self.model.ep_info_buffer:
            self.bar.set_postfix(ep_return=f"{np.mean([e['r'] for e in self.model.ep_info_buffer]):.1f}")
        if self.num_timesteps % self.every == 0:
            self.save()
        return True

    def _on_training_end(self) -> None:
        self.bar.close()
