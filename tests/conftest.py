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
def one_thread():
    """Torch on one thread during the test (the machine's cores are shared)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_state(a, b, path=""):
    """Nested dicts, lists and tensors of two checkpoints are equal, bit for bit (``path`` names a difference)."""
    import torch

    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            assert_same_state(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.fixture
def same_state():
    return assert_same_state


def assert_split_agent_run_equals_whole(config, tmp_path, updates=(6, 14)):
    """A train-agent run of 28 steps, and one stopped at step 20 (mid-episode, with extra evaluations and videos)
    then resumed to 28: equal metrics, checkpoints and replays. Returns the two checkpoints."""
    import numpy as np
    import torch

    from worldrl.training.agent import train_agent

    whole = train_agent(config, tmp_path / "whole", device="cpu", progress=False)
    often = {**config["train"], "steps": 20, "eval_every": 4, "video_every": 2}
    first = train_agent({**config, "train": often}, tmp_path / "split", device="cpu", progress=False)
    assert first["updates"] == updates[0]
    split = train_agent(config, tmp_path / "split", device="cpu", progress=False)
    assert whole == split and whole["updates"] == updates[1]
    checkpoints = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "split")]
    for key in ("agent", "episodes", "histories", "returns", "agent_state", "rng"):
        assert_same_state(checkpoints[0][key], checkpoints[1][key], key)
    replays = [np.load(tmp_path / run / "replay_28.npz") for run in ("whole", "split")]
    for key in replays[0].files:
        np.testing.assert_array_equal(replays[0][key], replays[1][key], err_msg=key)
    return checkpoints


@pytest.fixture
def split_run_equals_whole():
    return assert_split_agent_run_equals_whole


@pytest.fixture
def seeded_rollout():
    return rollout


def real_dmc_video(num_frames: int, size: int = 64):
    """float video [1, 3, T, size, size] in [-1, 1] of seeded random cartpole steps (real rendered frames)."""
    import gymnasium as gym
    import numpy as np
    import torch

    from worldrl.models.tokenizers import frames_to_float

    env = gym.make("worldrl/dmc-cartpole_balance-v0", size=size)
    env.action_space.seed(0)
    frames = [env.reset(seed=0)[0]]
    while len(frames) < num_frames:
        frames.append(env.step(env.action_space.sample())[0])
    env.close()
    return frames_to_float(torch.from_numpy(np.stack(frames))[None])


def fit_reconstruction(model, video, steps: int, lr: float = 2e-3) -> list[float]:
    """Adam on L1 + quantizer loss for ``steps`` steps, single-threaded; the L1 error of each step."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        errors = []
        for _ in range(steps):
            out = model(video)
            error = (out.reconstruction - video).abs().mean()
            optimizer.zero_grad()
            (error + out.quantizer.loss).backward()
            optimizer.step()
            errors.append(error.item())
    finally:
        torch.set_num_threads(threads)
    return errors


@pytest.fixture
def dmc_video():
    return real_dmc_video


@pytest.fixture
def fit():
    return fit_reconstruction


VIPER_FRAME_SIZE = 32


@pytest.fixture(scope="session")
def viper_model_dir(tmp_path_factory):
    """A saved tiny VideoGPT (context 3, random weights) with its tokenizer (32x32 frames -> 8x8 codes of 16)."""
    import torch

    from worldrl.models.predictors import build_video_model
    from worldrl.models.tokenizers import build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer({"type": "vqgan", "frame_size": VIPER_FRAME_SIZE, "base_channels": 8,
                                 "channel_mult": [1, 2, 2], "num_res_blocks": 1, "attention": False, "z_channels": 8,
                                 "quantizer": {"type": "vq", "codebook_size": 16, "dim": 8}}).eval()
    model = build_video_model({"type": "videogpt", "codebook_size": 16, "latent_shape": [8, 8], "context": 3,
                               "transformer": {"hidden": 32, "ffn": 64, "heads": 4, "layers": 2}})
    directory = tmp_path_factory.mktemp("viper") / "video_model"
    model.save(directory, tokenizer=tokenizer)
    return directory
