"""The models behind ``worldrl/sim-v0``: each backend predicts, :class:`~worldrl.envs.simulator.WorldModelVectorEnv`
owns the step contract (actions, resets, rewards, termination, truncation, seeding), as torchrl's WorldModelEnv.

A backend holds the state of ``N`` rows and implements :class:`SimulatorBackend`:

- ``start(rows, frames, actions)``: restart the rows of the bool mask ``rows [N]`` from real burn-in windows
  (``uint8 [n, T, H, W, C]`` and the actions that led to each frame, ``float [n, T, A]``);
- ``step(actions)``: one imagined step of every row from ``float [N, A]`` actions; returns the predicted reward
  and continue probability ``float64 [N]`` (None where the model has no such head);
- ``frames()``: the current frames ``uint8 [N, H, W, C]`` (decoded on demand: the env decodes once per step,
  after restarting finished rows); ``codes()``: the tokenizer codes ``int64 [N, h, w]`` where there are any;
- ``state_dict()`` / ``load_state_dict(state)``: the rows' model state (caches, latents, current codes) as CPU
  tensors, so that a saved simulator continues exactly (:meth:`WorldModelVectorEnv.state_dict
  <worldrl.envs.simulator.WorldModelVectorEnv.state_dict>`).

Backends: :class:`VideoModelBackend` (any action-conditioned :class:`~worldrl.models.predictors.VideoModel`
folder: VideoGPT, MaskGIT, TECO) and :class:`DreamerBackend` (the world model of a ``worldrl train-agent
--agent dreamerv3`` run); :func:`load_backend` picks by the folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from gymnasium import spaces

from worldrl.envs.simulator_spec import agent_run, read_spec, space_from_dict, space_to_dict


class SimulatorBackend(Protocol):
    frame_shape: tuple[int, int, int]
    action_space: spaces.Box | spaces.Discrete
    action_dim: int
    default_burn_in: int
    horizon: int | None
    """Default episode length (the longest training episode, or the run's ``max_episode_steps``)."""
    codes_space: spaces.Box | None
    has_reward: bool
    has_continue: bool

    def start(self, rows: np.ndarray, frames: np.ndarray, actions: torch.Tensor) -> None: ...

    def step(self, actions: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray | None]: ...

    def frames(self) -> np.ndarray: ...

    def codes(self) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def saved(value: Any) -> Any:
    """A CPU copy of the tensors in nested dicts/lists (what a ``weights_only`` checkpoint holds)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, Mapping):
        return {key: saved(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [saved(item) for item in value]
    return value


def restored(value: Any, device: torch.device) -> Any:
    """The inverse of :func:`saved`: copies of the tensors on ``device`` (never aliasing the saved state)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, copy=True)
    if isinstance(value, Mapping):
        return {key: restored(item, device) for key, item in value.items()}
    if isinstance(value, list):
        return [restored(item, device) for item in value]
    return value


def stream_state_dict(state: Any) -> dict[str, Any]:
    """A video model's :class:`~worldrl.models.predictors.base.StreamState` (its frame cache: keys, values, slot
    times and data, latest features; each row's time) as CPU tensors."""
    cache = state.cache
    return saved({"time": state.time, "slot_time": cache.slot_time, "keys": cache.keys, "values": cache.values,
                  "slot_data": cache.slot_data, "features": cache.features})


def load_stream_state(state: Any, data: Mapping[str, Any]) -> None:
    """Put :func:`stream_state_dict`'s ``data`` back into ``state`` (in place); an error if the batch or cache
    size differs."""
    cache, device = state.cache, state.time.device
    if tuple(data["slot_time"].shape) != tuple(cache.slot_time.shape):
        raise ValueError(f"the saved stream state has cache slots {tuple(data['slot_time'].shape)}, this model "
                         f"{tuple(cache.slot_time.shape)} ([rows, frames])")
    state.time = restored(data["time"], device)
    cache.slot_time = restored(data["slot_time"], device)
    cache.keys, cache.values = restored(data["keys"], device), restored(data["values"], device)
    cache.slot_data = restored(data["slot_data"], device)
    cache.features = restored(data["features"], device)


def resolve_action_space(given: spaces.Space | Mapping[str, Any] | None, spec: Mapping[str, Any], where: Any,
                         action_dim: int) -> spaces.Box | spaces.Discrete:
    """``given`` (a space or its JSON form), else the spec's; an error unless it is a Box or Discrete space of
    ``action_dim`` (flattened / one-hot) actions."""
    if given is None and spec.get("action_space") is None:
        raise ValueError(f"{where} has no simulator.json with the env's action space: pass action_space=")
    space = given if isinstance(given, spaces.Space) else space_from_dict(given or spec["action_space"])
    size = int(space.n) if isinstance(space, spaces.Discrete) else int(np.prod(space.shape))
    if not isinstance(space, (spaces.Box, spaces.Discrete)) or size != action_dim:
        raise ValueError(f"the action space {space} does not fit the model's action_dim {action_dim}")
    return space


def load_backend(model: str | Path, num_envs: int, device: torch.device, generator: torch.Generator,
                 **options: Any) -> VideoModelBackend | DreamerBackend:
    """:class:`DreamerBackend` for a ``train-agent`` run folder (or its ``agent.pt``), else
    :class:`VideoModelBackend`; ``options``: ``action_space``, ``temperature``, ``top_k``, ``task_id``."""
    if agent_run(model) is not None:
        for name in ("top_k", "task_id"):
            if options.pop(name, None) is not None:
                raise ValueError(f"{name}= applies to video models, not to a DreamerV3 world model ({model})")
        return DreamerBackend(model, num_envs, device, generator, **options)
    return VideoModelBackend(model, num_envs, device, generator, **options)


class VideoModelBackend:
    """An action-conditioned video model on tokenizer codes: ``sample_step`` for all rows, heads on its features."""

    def __init__(self, folder: str | Path, num_envs: int, device: torch.device, generator: torch.Generator,
                 action_space: spaces.Space | Mapping[str, Any] | None = None, temperature: float = 1.0,
                 top_k: int | None = None, task_id: int | None = None):
        from worldrl.models.predictors import load_video_model
        from worldrl.models.reward_heads import load_heads
        from worldrl.models.tokenizers import load_tokenizer

        folder = Path(folder)
        self.num_envs, self.device, self.generator = num_envs, device, generator
        self.model = load_video_model(folder, device)
        self.tokenizer = load_tokenizer(folder / "tokenizer", device).eval()
        config = self.model.config
        if not config.action_dim:
            raise ValueError(f"{folder}: the video model has no action conditioning (action_dim = 0); a simulator "
                             "needs one trained with model.action_dim set to the env's action size")
        if self.tokenizer.frames_per_code != 1:
            raise ValueError(f"{folder}: a simulator needs a per-frame tokenizer")
        spec = read_spec(folder)
        self.action_space = resolve_action_space(action_space, spec, folder, config.action_dim)
        self.action_dim, self.horizon = config.action_dim, spec.get("horizon")
        self.task = None
        if config.num_tasks:
            if task_id is None:
                raise ValueError(f"{folder}: the model is conditioned on {config.num_tasks} tasks: pass task_id=")
            self.task = torch.full((num_envs,), int(task_id), dtype=torch.long, device=device)
        self.heads = load_heads(folder, device)
        self.has_reward = self.heads is not None and self.heads.reward is not None
        self.has_continue = self.heads is not None and self.heads.cont is not None
        self.temperature, self.top_k = float(temperature), top_k
        self.frame_shape = tuple(self.tokenizer.frame_shape)
        self.default_burn_in = max(config.context, 1)
        self.codes_space = spaces.Box(0, self.model.codebook_size - 1, self.model.latent_shape, np.int64)
        self.state = self.model.init_state(num_envs, device)
        self.current = torch.zeros(num_envs, *self.model.latent_shape, dtype=torch.long, device=device)

    def start(self, rows: np.ndarray, frames: np.ndarray, actions: torch.Tensor) -> None:
        """Clear the rows' streaming state and feed them the windows' codes, one model call per frame; the frames
        are observed, not scored (MaskGIT's and TECO's likelihood estimates would cost several passes each)."""
        with torch.no_grad():
            window = self.tokenizer.encode(torch.as_tensor(frames, device=self.device))
        mask = torch.as_tensor(rows, device=self.device)
        self.model.reset_state(self.state, mask)
        codes = self.current.clone()
        action = torch.zeros(self.num_envs, self.action_dim, device=self.device)
        for t in range(window.shape[1]):
            codes[mask], action[mask] = window[:, t], actions[:, t]
            self.model.observe(self.state, codes, self.task, action, rows=mask)
        self.current = codes

    def step(self, actions: torch.Tensor) -> tuple[np.ndarray | None, np.ndarray | None]:
        self.state, self.current = self.model.sample_step(self.state, self.task, actions, self.temperature,
                                                          self.top_k, self.generator)
        if self.heads is None:
            return None, None
        with torch.no_grad():
            reward, cont = self.heads(self.model.frame_features(self.state))
        return tuple(None if x is None else x.double().cpu().numpy() for x in (reward, cont))

    def frames(self) -> np.ndarray:
        with torch.no_grad():
            return self.tokenizer.decode(self.current[:, None])[:, 0].cpu().numpy()

    def codes(self) -> np.ndarray:
        return self.current.cpu().numpy()

    def state_dict(self) -> dict[str, Any]:
        """The stream state (KV cache, row times) and the current codes, as CPU tensors."""
        return {"stream": stream_state_dict(self.state), "current": saved(self.current)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_stream_state(self.state, state["stream"])
        self.current = restored(state["current"], self.device)


class DreamerBackend:
    """The world model of a DreamerV3 run: the RSSM posterior over the burn-in frames, then the prior per action.

    Observations are the decoder's mean image (as uint8, clipped), rewards the reward head's two-hot mean,
    continue probabilities the continue head's. ``temperature`` scales the latents' logits before sampling;
    0 takes their modes (no randomness: rows of a vector env equal single envs). The action space is the
    agent's, read from the weights as the image shape is (no env is made): ``Discrete(n)`` (one-hot), or a
    ``Box`` in ``[-1, 1]`` (the trainer maps it to the real env's bounds, the same for DMC). Given a Box
    ``action_space=`` with other bounds (the real env's), actions and start-frame actions are mapped into
    ``[-1, 1]`` as ``train-agent`` maps the agent's out of it.
    """

    codes_space = None
    has_reward = has_continue = True

    def __init__(self, path: str | Path, num_envs: int, device: torch.device, generator: torch.Generator,
                 action_space: spaces.Space | Mapping[str, Any] | None = None, temperature: float = 1.0):
        from worldrl.agents.dreamerv3.agent import OPEN_LOOP_CONTEXT

        self.num_envs, self.device, self.generator = num_envs, device, generator
        self.model, discrete = load_dreamer_world_model(path, device)
        rssm = self.model.rssm
        self.action_dim = rssm.img_in[0].in_features - rssm.stoch_dim * rssm.classes
        agent_space = spaces.Discrete(self.action_dim) if discrete else spaces.Box(-1, 1, (self.action_dim,),
                                                                                    np.float32)
        spec = read_spec(path)
        self.horizon = spec.get("horizon")
        self.action_space = resolve_action_space(action_space, {"action_space": space_to_dict(agent_space)}, path,
                                                 self.action_dim)
        self.scale = None
        if isinstance(self.action_space, spaces.Box):
            low, high = (torch.as_tensor(b.reshape(-1), dtype=torch.float32, device=device)
                         for b in (self.action_space.low, self.action_space.high))
            if not (torch.isfinite(low).all() and torch.isfinite(high).all()):
                raise ValueError(f"{path}: a DreamerV3 simulator needs a bounded Box action space")
            if not ((low == -1).all() and (high == 1).all()):
                self.scale = (low, high)
        self.temperature = float(temperature)
        self.frame_shape = self.model.image_shape
        self.default_burn_in = OPEN_LOOP_CONTEXT
        self.state = {key: value.clone() for key, value in rssm.initial(num_envs).items()}

    def _agent_actions(self, actions: torch.Tensor) -> torch.Tensor:
        if self.scale is None:
            return actions
        low, high = self.scale
        return (actions - low) / (high - low) * 2.0 - 1.0

    @torch.no_grad()
    def start(self, rows: np.ndarray, frames: np.ndarray, actions: torch.Tensor) -> None:
        """The rows' posterior after observing their windows from the learned initial state."""
        model, rssm = self.model, self.model.rssm
        frames = torch.as_tensor(frames, device=self.device)
        embed = rssm.project_embed(model.encode({"image": frames}))
        actions = self._agent_actions(actions)
        count, length = frames.shape[:2]
        state = rssm.initial(count)
        for t in range(length):
            is_first = torch.full((count,), t == 0, device=self.device)
            state, _ = rssm.obs_step(state, actions[:, t], embed[:, t], is_first, self.generator, self.temperature)
        mask = torch.as_tensor(rows, device=self.device)
        for key, value in state.items():
            self.state[key][mask] = value

    @torch.no_grad()
    def step(self, actions: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        self.state = self.model.rssm.img_step(self.state, self._agent_actions(actions), self.generator,
                                              self.temperature)
        feat = self.model.rssm.feat(self.state)
        reward = self.model.reward(feat).mean
        cont = torch.sigmoid(self.model.cont_logits(feat))
        return reward.double().cpu().numpy(), cont.double().cpu().numpy()

    @torch.no_grad()
    def frames(self) -> np.ndarray:
        image = self.model.image_decoder(self.model.rssm.feat(self.state)).float()
        return ((image + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()

    def codes(self) -> np.ndarray:
        raise ValueError("a DreamerV3 world model has no tokenizer codes")

    def state_dict(self) -> dict[str, Any]:
        """The rows' RSSM latents, as CPU tensors."""
        return {"latents": saved(self.state)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        latents = state["latents"]
        if set(latents) != set(self.state) or any(latents[k].shape != self.state[k].shape for k in latents):
            raise ValueError("the saved RSSM latents do not fit this model and number of rows")
        self.state = restored(latents, self.device)


def load_dreamer_world_model(path: str | Path, device: torch.device) -> tuple[Any, bool]:
    """The world model of a DreamerV3 ``train-agent`` run (its folder or ``agent.pt``), in eval mode, and whether
    the agent's actions are discrete. The image shape and action size are read from the weights."""
    from worldrl.agents.dreamerv3 import load_dreamerv3_config
    from worldrl.agents.dreamerv3.world_model import WorldModel
    from worldrl.config import load_yaml

    run = agent_run(path)
    kind = (load_yaml(run / "config.yaml").get("agent") or {}).get("type")
    if kind != "dreamerv3":
        raise ValueError(f"{path}: a {kind!r} agent has no world model; the simulator takes DreamerV3 runs")
    config = load_dreamerv3_config(run / "config.yaml").world_model
    modules = torch.load(run / "agent.pt", map_location="cpu", weights_only=True)["modules"]
    weights = {key.removeprefix("world_model."): value for key, value in modules.items()
               if key.startswith("world_model.")}
    if any(key.startswith("vector_") for key in weights) or "image_encoder.net.0.weight" not in weights:
        raise ValueError(f"{path}: the simulator needs a world model of images alone")
    convs = [value for key, value in weights.items() if key.startswith("image_encoder.") and value.ndim == 4]
    stages, last = len(convs), convs[-1].shape[0]
    height = config.min_resolution * 2**stages
    width = weights["rssm.obs_embed.weight"].shape[1] // (last * config.min_resolution) * 2**stages
    image_shape = (height, width, int(convs[0].shape[1]))
    action_dim = weights["rssm.img_in.0.weight"].shape[1] - config.stoch * config.classes
    model = WorldModel(config, action_dim, image_shape)
    model.load_state_dict(weights)
    discrete = modules["behavior.actor.net.out.weight"].shape[0] == action_dim
    return model.to(device).eval(), discrete
