import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from worldrl.cli import main
from worldrl.config import load_config
from worldrl.data.collect import collect
from worldrl.models.predictors import load_video_model
from worldrl.models.tokenizers import build_tokenizer, load_tokenizer
from worldrl.training import ConfigMismatchError, train_video_model
from worldrl.training.video_model import code_dtype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(ROOT, "configs", "video", "cpu.yaml")
TINY = [
    "model.codebook_size=16",
    "model.latent_shape=[4,4]",
    "model.context=3",
    "model.transformer.hidden=32",
    "model.transformer.ffn=64",
    "model.transformer.heads=2",
    "model.transformer.layers=2",
    "train.batch_size=8",
    "train.lr=3e-3",
    "train.steps=10",
    "train.val_fraction=0.3",
    "train.log_every=5",
    "train.eval_every=5",
    "train.eval_batches=1",
    "train.sample_every=5",
    "train.sample_count=2",
    "train.checkpoint_every=5",
    "train.encode_frames=8",
]
"""A VideoGPT with 2 layers of width 32 on 4x4 codes from a 16-code tokenizer: a step takes a few ms."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(*overrides: str) -> dict:
    return load_config(PRESET, [*TINY, *overrides])


def save_tokenizer(path, seed: int = 0):
    """A per-frame VQ-GAN with random weights: 32x32 frames -> 4x4 codes of 16."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer({
        "type": "vqgan", "frame_size": 32, "base_channels": 8, "channel_mult": [1, 1, 1, 1], "num_res_blocks": 1,
        "attention": False, "z_channels": 4, "norm_groups": 4,
        "quantizer": {"type": "vq", "codebook_size": 16, "dim": 4},
    })
    tokenizer.save(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three short random cartpole episodes at 32x32 (real rendered frames) and a tokenizer."""
    path = tmp_path_factory.mktemp("cartpole")
    rng = np.random.default_rng(0)
    collect(
        "worldrl/dmc-cartpole_balance-v0", lambda obs: rng.uniform(-1, 1, size=(1, 1)), 3, path,
        env_kwargs={"max_episode_steps": 24, "size": 32}, progress=False,
    )
    return [str(path)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return save_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def load_checkpoint(run) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_training_writes_a_loadable_model_and_caches_codes(data, tokenizer, tmp_path):
    run = tmp_path / "run"
    metrics = train_video_model(tiny(), tokenizer, data, run, "cpu", progress=False)
    assert metrics["step"] == 10 and metrics["eval_split"] == "val" and metrics["encoded_episodes"] == 3
    assert [h["step"] for h in metrics["history"]] == [5, 10]
    assert np.isfinite(metrics["val_bits_per_code"]) and metrics["val_frame_log_likelihood"] < 0
    model = load_video_model(run / "video_model")
    assert model.codebook_size == 16 and load_tokenizer(run / "video_model" / "tokenizer").codebook_size == 16
    for key, value in model.state_dict().items():
        assert torch.equal(value, load_checkpoint(run)["model"][key]), key
    cached = sorted((run / "codes").glob("*/*.npy"))
    assert len(cached) == 3 and np.load(cached[0]).dtype == np.int16 and np.load(cached[0]).shape[1:] == (4, 4)
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written["train"]["betas"] == [0.9, 0.999] and len(written["tokenizer"]["digest"]) == 64
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((run / "tb").glob("events.out.tfevents.*"))))
    events.Reload()
    assert {"train/loss", "train/bits_per_code", "train/steps_per_second", "val/bits_per_code",
            "val/frame_log_likelihood"} <= set(events.Tags()["scalars"])
    video_tag = "val/sample_video" if importlib.util.find_spec("moviepy") else "val/sample_clip"
    assert {"val/sample", video_tag} <= set(events.Tags()["images"])

    again = train_video_model(tiny("train.steps=12"), tokenizer, data, run, "cpu", progress=False)
    assert again["step"] == 12 and again["encoded_episodes"] == 0  # the cache is reused
    other = save_tokenizer(tmp_path / "other", seed=1)
    with pytest.raises(ConfigMismatchError, match="tokenizer.digest"):
        train_video_model(tiny("train.steps=14"), other, data, run, "cpu", progress=False)
    changed = train_video_model(tiny("train.steps=14"), other, data, run, "cpu", progress=False, force=True)
    assert changed["encoded_episodes"] == 3 and len(list((run / "codes").iterdir())) == 2


def test_resume_continues_exactly(data, tokenizer, tmp_path):
    split, whole = tmp_path / "split", tmp_path / "whole"
    train_video_model(tiny("train.steps=5"), tokenizer, data, split, "cpu", progress=False)
    train_video_model(tiny(), tokenizer, data, split, "cpu", progress=False)
    train_video_model(tiny(), tokenizer, data, whole, "cpu", progress=False)
    a, b = load_checkpoint(split), load_checkpoint(whole)
    assert a["step"] == b["step"] == 10
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with pytest.raises(ConfigMismatchError, match=r"train\.lr: 0\.003 -> 0\.001"):
        train_video_model(tiny("train.steps=12", "train.lr=1e-3"), tokenizer, data, split, "cpu", progress=False)


def test_a_tiny_model_fits_real_episodes(data, tokenizer, tmp_path):
    config = tiny("train.steps=60", "train.log_every=10", "train.eval_every=100", "train.sample_every=0",
                  "train.checkpoint_every=100", "train.val_fraction=0")
    metrics = train_video_model(config, tokenizer, data, tmp_path, "cpu", progress=False)
    history = metrics["history"]
    assert metrics["eval_split"] == "train"
    # ln 16 = 2.77 nats per code at the start; the codes of 3 short episodes are soon far more predictable.
    assert history[0]["nats_per_code"] > history[-1]["nats_per_code"] + 0.5
    assert metrics["val_nats_per_code"] < 0.8 * np.log(16)


def test_mismatches_are_refused(data, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="codebook of 32 codes but the tokenizer 16"):
        train_video_model(tiny("model.codebook_size=32"), tokenizer, data, tmp_path / "a", "cpu", progress=False)
    with pytest.raises(ValueError, match=r"shape \(h, w\) = \(8, 8\) but the tokenizer makes \(4, 4\)"):
        train_video_model(tiny("model.latent_shape=[8,8]"), tokenizer, data, tmp_path / "b", "cpu", progress=False)
    with pytest.raises(ValueError, match="has no task_id"):
        train_video_model(tiny("model.num_tasks=2"), tokenizer, data, tmp_path / "c", "cpu", progress=False)
    with pytest.raises(ValueError, match=r"task ids \[3\] but model.num_tasks is 2"):
        train_video_model(tiny("model.num_tasks=2", "train.task_ids=[3]"), tokenizer, data, tmp_path / "d", "cpu")
    with pytest.raises(ValueError, match="action_dim is 2 but .* actions of size 1"):
        train_video_model(tiny("model.action_dim=2"), tokenizer, data, tmp_path / "e", "cpu", progress=False)
    assert code_dtype(32768) == np.int16 and code_dtype(32769) == np.int32


def test_task_and_action_conditioning(data, tokenizer, tmp_path):
    config = tiny("model.num_tasks=2", "train.task_ids=[1]", "model.action_dim=1", "train.steps=2",
                  "train.sample_every=0")
    metrics = train_video_model(config, tokenizer, data, tmp_path, "cpu", progress=False)
    assert metrics["step"] == 2 and np.isfinite(metrics["val_nats_per_code"])


def test_cli_help_overrides_and_errors(data, tokenizer, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-video-model", "--help"])
    assert exit_info.value.code == 0 and "--tokenizer" in capsys.readouterr().out
    base = ["train-video-model", "--tokenizer", str(tokenizer), "--data", *data, "--config", PRESET, "--device",
            "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a"), *TINY, "train.nope=1"]) == 2
    assert "unknown key train.nope" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), *TINY, "train.steps=3", "train.sample_every=0"]) == 0
    assert "3 steps" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "b")["config"]["train"]["steps"] == 3
    assert main([*base, "--out", str(tmp_path / "c"), "--model", "maskgit", *TINY, "train.steps=2",
                 "train.sample_every=0"]) == 0
    assert load_checkpoint(tmp_path / "c")["config"]["model"]["type"] == "maskgit"
    assert main([*base, "--out", str(tmp_path / "d"), "--model", "nope", *TINY]) == 2
    assert "model.type must be one of" in capsys.readouterr().err


def test_two_rank_ddp_run_stays_in_sync(data, tokenizer, tmp_path):
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "worldrl.cli", "train-video-model", "--tokenizer", str(tokenizer), "--data", *data,
        "--config", PRESET, "--out", str(run), "--device", "cpu", "--no-progress", *TINY, "train.steps=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 steps on 2 ranks (in sync)" in result.stdout
    checkpoint = load_checkpoint(run)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert len(list((run / "codes").glob("*/*.npy"))) == 3
    load_video_model(run / "video_model")


def test_frame_skip_trains_on_every_kth_frame(data, tokenizer, tmp_path):
    from worldrl.training.video_model import VideoModelTrainer

    config = tiny("train.frame_skip=2", "model.stride=2", "train.steps=2", "train.sample_every=0")
    trainer = VideoModelTrainer(config, tokenizer, data, tmp_path / "skip", "cpu", progress=False)
    clips = trainer.train_data
    assert (clips.stride, clips.span) == (4, 3 * 4 + 1)  # context 3 at model stride 2, every 2nd recorded frame
    for index in (0, len(clips) - 1):
        episode, start = clips.locate(index)
        codes = clips.codes[episode]
        assert torch.equal(clips[index]["codes"], torch.from_numpy(codes[start : start + 13 : 4].astype(np.int64)))
        assert torch.equal(clips.segment(index)["codes"],
                           torch.from_numpy(codes[start : start + 13 : 2].astype(np.int64)))
    metrics = trainer.train()
    assert metrics["step"] == 2 and np.isfinite(metrics["val_nats_per_code"])
    with pytest.raises(ValueError, match="frame_skip 2 drops the skipped frames' actions"):
        train_video_model(tiny("train.frame_skip=2", "model.action_dim=1"), tokenizer, data, tmp_path / "a", "cpu")
    with pytest.raises(ValueError, match="frame_skip must be >= 1"):
        train_video_model(tiny("train.frame_skip=0"), tokenizer, data, tmp_path / "b", "cpu")
