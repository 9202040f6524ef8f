import os
import subprocess
import sys

import pytest

from worldrl.envs import headless


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, timeout=120)


def test_unset_mujoco_gl_is_chosen_and_renders():
    result = _python(
        "import os, gymnasium as gym, worldrl\n"
        "env = gym.make('worldrl/dmc-cartpole_balance-v0'); obs, _ = env.reset(seed=0)\n"
        "print(os.environ['MUJOCO_GL'], obs.std() > 0)"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() in (["egl", "True"], ["osmesa", "True"])


def test_user_choice_is_respected(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert headless.configure_mujoco_gl() == "osmesa"


def test_no_backend_disables_rendering_with_a_clear_error(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(headless, "_egl_works", lambda: False)
    monkeypatch.setattr(headless, "_osmesa_works", lambda: False)
    assert headless.configure_mujoco_gl() == "disabled"
    with pytest.raises(RuntimeError, match="libegl1.*libosmesa6"):
        headless.require_rendering()


def test_disabled_rendering_still_allows_state_observations():
    result = _python(
        "import gymnasium as gym, worldrl\n"
        "env = gym.make('worldrl/dmc-cartpole_balance-v0', obs_type='state'); env.reset(seed=0)\n"
        "try:\n    gym.make('worldrl/dmc-cartpole_balance-v0')\n"
        "except RuntimeError as e:\n    print('error:', e)",
        MUJOCO_GL="disabled",
    )
    assert result.returncode == 0, result.stderr
    assert "error:" in result.stdout and "headless OpenGL" in result.stdout
