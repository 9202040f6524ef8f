"""Registers every worldrl environment id with Gymnasium.

Ids are ``worldrl/<suite>-<task>-v0``. Entry points are :class:`EnvFactory`
objects: they import the environment's module only when an env is made (so
``import worldrl`` stays cheap and Atari or RLBench are not loaded for a DMC
user) and they reject misspelt keyword arguments by name.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Iterable
from typing import Any

import gymnasium as gym

NAMESPACE = "worldrl"
VERSION = 0


class EnvFactory:
    """Gymnasium entry point that builds ``module:Class`` after checking the keyword arguments."""

    def __init__(self, target: str, env_id: str):
        self.target = target
        self.env_id = env_id

    def env_class(self) -> type[gym.Env]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(
        self, reward: str = "task", video_model: Any = None, viper: dict | None = None, **kwargs: Any
    ) -> gym.Env:
        """The env; ``reward="viper"`` wraps it in :class:`~worldrl.wrappers.VIPERReward` with ``video_model``
        and the wrapper's other arguments in ``viper`` (a dict)."""
        if reward not in ("task", "viper"):
            raise ValueError(f"{self.env_id}: reward must be 'task' or 'viper', got {reward!r}")
        if reward == "task" and (video_model is not None or viper):
            raise TypeError(f"{self.env_id}: video_model and viper need reward='viper'")
        if reward == "viper" and video_model is None:
            raise TypeError(f"{self.env_id}: reward='viper' needs video_model= (a folder written by train-video-model)")
        cls = self.env_class()
        check_kwargs(cls, kwargs, self.env_id)
        env = cls(**kwargs)
        if reward == "viper":
            from worldrl.wrappers.viper import VIPERReward

            env = VIPERReward(env, video_model=video_model, **(viper or {}))
        return env

    def __repr__(self) -> str:
        return f"EnvFactory({self.target!r})"


def check_kwargs(cls: type, kwargs: dict[str, Any], env_id: str) -> None:
    """Raise a TypeError naming any argument that ``cls`` does not accept, with the allowed ones."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [name for name, p in params.items() if name != "self" and p.kind is not inspect.Parameter.VAR_POSITIONAL]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, allowed, n=1)
            hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise TypeError(
            f"{env_id}: unknown argument {', '.join(hints)}; allowed arguments: {', '.join(sorted(allowed))}"
        )


def env_id(suite: str, task: str) -> str:
    return f"{NAMESPACE}/{suite}-{task}-v{VERSION}"


def register(suite: str, task: str, target: str, kwargs: dict[str, Any], **spec: Any) -> None:
    """Register ``worldrl/<suite>-<task>-v0`` unless it already is (re-imports are harmless)."""
    name = env_id(suite, task)
    if name in gym.registry:
        return
    gym.register(name, entry_point=EnvFactory(target, name), kwargs=kwargs, **spec)


def registered_ids(suite: str | None = None) -> list[str]:
    """All worldrl ids, optionally only those of one suite (``dmc``, ``atari``, ``manip``, ``maze``, ``rlbench``)."""
    prefix = f"{NAMESPACE}/" + (f"{suite}-" if suite else "")
    return sorted(i for i in gym.registry if i.startswith(prefix))


def closest_ids(name: str, candidates: Iterable[str] | None = None, n: int = 5) -> list[str]:
    """The registered ids that look most like ``name`` (typos, missing namespace or version)."""
    candidates = list(candidates if candidates is not None else registered_ids())
    query = name if name.startswith(f"{NAMESPACE}/") else f"{NAMESPACE}/{name}"
    if "-v" not in query.rsplit("/", 1)[-1][-4:]:
        query += f"-v{VERSION}"
    close = difflib.get_close_matches(query, candidates, n=n, cutoff=0.5)
    if not close:
        task = query.split("/", 1)[-1].split("-")[1:2]
        close = [c for c in candidates if task and task[0] in c][:n]
    return close


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` with a clearer error for an unknown id: it lists the closest registered ids."""
    if env_id not in gym.registry:
        close = closest_ids(env_id)
        hint = f" Closest registered ids: {', '.join(close)}." if close else ""
        raise gym.error.NameNotFound(
            f"Unknown environment id {env_id!r}.{hint} `worldrl envs` lists them all."
        )
    return gym.make(env_id, **kwargs)


def register_envs() -> None:
    """Register all suites. Called by ``import worldrl``."""
    from worldrl.envs import atari, dmc, manipulation, maze, rlbench
    from worldrl.envs.simulator_spec import register_simulator

    dmc.register_ids()
    atari.register_ids()
    manipulation.register_ids()
    maze.register_ids()
    rlbench.register_ids()
    register_simulator()
