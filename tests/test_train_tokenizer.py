import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

import worldrl.training.tokenizer as trainer_module
from worldrl.cli import main
from worldrl.commands.train_tokenizer import split_overrides
from worldrl.config import load_config
from worldrl.data.collect import collect
from worldrl.models.tokenizers import load_tokenizer
from worldrl.training import ConfigMismatchError, NonFiniteLossError, resolve_config, train_tokenizer
from worldrl.training.losses import PerceptualLoss, estimate_data_variance, reconstruction_loss
from worldrl.training.tokenizer import ClipBatches, config_differences

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRESET = os.path.join(ROOT, "configs", "tokenizer", "cpu.yaml")
TINY = [
    "model.frame_size=32",
    "model.base_channels=16",
    "model.channel_mult=[1,2,2]",
    "model.z_channels=8",
    "model.quantizer.codebook_size=32",
    "model.quantizer.dim=8",
    "discriminator.channels=16",
    "discriminator.num_layers=2",
    "loss.discriminator_start=15",
    "train.batch_size=8",
    "train.lr=1e-3",
    "train.steps=30",
    "train.num_workers=0",
    "train.val_fraction=0.1",
    "train.log_every=5",
    "train.image_every=10",
    "train.eval_every=15",
    "train.eval_batches=2",
    "train.checkpoint_every=10",
]
"""A VQ-GAN small enough to train in a second or two on 32x32 frames; episode 1 of 3 lands in the val split."""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train far faster on one thread, and much more so on a CPU shared with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(*overrides: str) -> dict:
    return load_config(PRESET, [*TINY, *overrides])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three short random Pong episodes at 32x32 (about 0.3 s to collect)."""
    path = tmp_path_factory.mktemp("pong")
    rng = np.random.default_rng(0)
    collect(
        "worldrl/atari-pong-v0", lambda obs: rng.integers(0, 6, size=1), 3, path,
        env_kwargs={"max_episode_steps": 40, "size": 32}, progress=False,
    )
    return [str(path)]


def load_checkpoint(run) -> dict:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)


def test_training_improves_and_writes_the_run_folder(data, tmp_path):
    run = tmp_path / "run"
    features = tmp_path / "features.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())).save(str(features))
    metrics = train_tokenizer(tiny(f"train.perceptual_weights={features}"), data, run, device="cpu", progress=False)
    history = metrics["history"]
    assert history[0]["perceptual"] > 0
    assert [h["step"] for h in history] == [5, 10, 15, 20, 25, 30]
    assert history[-1]["psnr"] > history[0]["psnr"] + 1.0
    assert history[-1]["reconstruction"] < history[0]["reconstruction"]
    assert "generator" not in history[2] and "generator" in history[3]  # the GAN is on from step 15
    assert history[-1]["adaptive_weight"] > 0 and np.isfinite(history[-1]["discriminator"])
    assert metrics["step"] == 30 and metrics["eval_split"] == "val"
    assert np.isfinite(metrics["val_psnr"]) and 0 < metrics["val_ssim"] <= 1 and 0 < metrics["val_usage"] <= 1

    tokenizer = load_tokenizer(run / "tokenizer", frame_shape=(32, 32, 3))
    frames = torch.randint(0, 256, (2, 1, 32, 32, 3), dtype=torch.uint8)
    assert tokenizer.decode(tokenizer.encode(frames)).shape == frames.shape
    checkpoint = load_checkpoint(run)
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(value, checkpoint["model"][key]), key
    written = yaml.safe_load((run / "config.yaml").read_text())
    assert written == resolve_config(tiny(f"train.perceptual_weights={features}")) == checkpoint["config"]
    assert written["train"]["seed"] == 0 and written["loss"]["discriminator_start"] == 15
    assert list((run / "tb").glob("events.out.tfevents.*"))


def test_resume_continues_exactly(data, tmp_path):
    split, whole = tmp_path / "split", tmp_path / "whole"
    train_tokenizer(tiny("train.steps=10", "loss.discriminator_start=5"), data, split, "cpu", progress=False)
    assert load_checkpoint(split)["step"] == 10
    resumed = train_tokenizer(tiny("train.steps=20", "loss.discriminator_start=5"), data, split, "cpu", progress=False)
    train_tokenizer(tiny("train.steps=20", "loss.discriminator_start=5"), data, whole, "cpu", progress=False)
    assert [h["step"] for h in resumed["history"]] == [15, 20]
    a, b = load_checkpoint(split), load_checkpoint(whole)
    assert a["step"] == b["step"] == 20
    for part in ("model", "discriminator"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"
    assert a["optimizer"]["state"][0]["step"] == b["optimizer"]["state"][0]["step"]

    with pytest.raises(ConfigMismatchError, match=r"train\.lr: 0\.001 -> 0\.0005.*--force"):
        train_tokenizer(tiny("train.steps=25", "train.lr=5e-4", "loss.discriminator_start=5"), data, split, "cpu")
    forced = train_tokenizer(
        tiny("train.steps=22", "train.lr=5e-4", "loss.discriminator_start=5"), data, split, "cpu",
        progress=False, force=True,
    )
    assert forced["step"] == 22 and yaml.safe_load((split / "config.yaml").read_text())["train"]["lr"] == 5e-4


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    calls = []

    def poisoned(*args, **kwargs):
        calls.append(None)
        loss = reconstruction_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 13 else loss

    monkeypatch.setattr(trainer_module, "reconstruction_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"step 13: reconstruction = nan.*step 10\) is unchanged"):
        train_tokenizer(tiny("train.steps=20"), data, run, "cpu", progress=False)
    checkpoint = load_checkpoint(run)
    assert checkpoint["step"] == 10
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_bf16_autocast_gradient_clipping_and_warmup(data, tmp_path):
    config = tiny("train.steps=4", "train.log_every=1", "train.bf16=true", "train.grad_clip=0.5",
                  "train.warmup_steps=4", "loss.discriminator_start=2")
    history = train_tokenizer(config, data, tmp_path, "cpu", progress=False)["history"]
    assert [h["lr"] for h in history] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["discriminator_grad_norm"]) for h in history[2:])


def test_cli_help_and_errors(data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-tokenizer", "--help"])
    assert exit_info.value.code == 0
    assert "--config" in capsys.readouterr().out
    code = main(["train-tokenizer", "--data", *data, "--config", PRESET, "--out", str(tmp_path), "train.nope=1"])
    assert code == 2 and "unknown key train.nope" in capsys.readouterr().err
    assert split_overrides([data[0], "train.steps=5"], ["x.y=1"]) == ([data[0]], ["train.steps=5", "x.y=1"])


def test_two_rank_ddp_run_stays_in_sync(data, tmp_path):
    run = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "worldrl.cli", "train-tokenizer", "--data", *data, "--config", PRESET, "--out", str(run),
        "--device", "cpu", "--no-progress", *TINY, "train.steps=6", "loss.discriminator_start=3",
        "train.eval_every=3", "train.checkpoint_every=3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Only VQ's ring of each rank's recent encoder outputs may differ; the EMA codebook must not.
    assert "6 steps on 2 ranks (parameters in sync; rank-local buffers: ['quantizer.recent'])" in result.stdout
    checkpoint = load_checkpoint(run)
    assert checkpoint["step"] == 6 and checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    load_tokenizer(run / "tokenizer")


def test_video_model_with_normalized_mse(data, tmp_path):
    config = load_config(
        os.path.join(ROOT, "configs", "tokenizer", "videogpt_dmc.yaml"),
        ["model.frame_size=32", "model.hidden_channels=16", "model.res_channels=8", "model.num_res_layers=1",
         "model.max_frames=4", "model.quantizer.codebook_size=16", "model.quantizer.dim=8", "train.clip_length=4",
         "train.steps=2", "train.batch_size=2", "train.num_workers=0", "train.val_fraction=0.1",
         "train.eval_batches=1", "train.image_every=1"],
    )
    metrics = train_tokenizer(config, data, tmp_path, "cpu", progress=False)
    assert metrics["step"] == 2 and np.isfinite(metrics["val_psnr"]) and 0 < metrics["data_variance"] < 1
    assert metrics["history"][-1]["reconstruction"] > 0.1  # about 1 (the data variance) for an untrained model
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((tmp_path / "tb").glob("events.out.tfevents.*"))))
    events.Reload()
    video_tag = "train/reconstruction_video" if importlib.util.find_spec("moviepy") else "train/reconstruction_clip"
    assert {"train/reconstruction", video_tag, "val/reconstruction"} <= set(events.Tags()["images"])
    assert {"train/psnr", "train/codebook/usage", "val/psnr", "val/ssim", "val/usage"} <= set(events.Tags()["scalars"])


def test_clip_batches_resume_and_shard():
    whole = ClipBatches(10, 4, seed=3)
    batches = [b for b, _ in zip(whole, range(8))]
    assert [b for b, _ in zip(ClipBatches(10, 4, seed=3, start=5), range(3))] == batches[5:]
    assert sorted(sum(batches[:5], [])[:10]) == list(range(10))  # an epoch visits every clip once
    ranks = [[b for b, _ in zip(ClipBatches(9, 5, seed=1, rank=r, world_size=2), range(1))][0] for r in range(2)]
    assert set(ranks[0]) | set(ranks[1]) == set(range(9))


def test_losses_and_config_differences(tmp_path):
    x, y = torch.zeros(2, 3, 1, 4, 4), torch.full((2, 3, 1, 4, 4), 0.5)
    assert float(reconstruction_loss("l1+l2", x, y)) == pytest.approx(0.75)
    assert float(reconstruction_loss("normalized_mse", x, y, data_variance=0.5)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="one of"):
        reconstruction_loss("l3", x, y)
    clips = [{"video": torch.tensor([[0, 255]], dtype=torch.uint8)}] * 3
    assert estimate_data_variance(clips) == pytest.approx(1.0)

    network = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    network.save(str(tmp_path / "features.pt"))
    perceptual = PerceptualLoss.from_file(tmp_path / "features.pt")
    frames = torch.rand(2, 3, 8, 8)
    assert float(perceptual(frames, frames)) == 0.0 and float(perceptual(frames, -frames)) > 0
    with pytest.raises(ValueError, match="does not exist"):
        PerceptualLoss.from_file(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a module")
    with pytest.raises(ValueError, match="not a TorchScript module"):
        PerceptualLoss.from_file(tmp_path / "garbage.pt")

    old = {"model": {"a": 1}, "train": {"steps": 10, "lr": 1e-4}}
    assert config_differences(old, {"model": {"a": 1}, "train": {"steps": 20, "lr": 1e-4}}) == []
    assert config_differences(old, {"model": {"a": 2}, "train": {"steps": 10, "lr": 1e-4}}) == ["model.a: 1 -> 2"]
