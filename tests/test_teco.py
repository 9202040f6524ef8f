"""TECO predictor: exact context, streaming = batch scoring, DropLoss, conditioning, sampling, training and
checkpoints (tiny models), and a short run of the trainer on real cartpole episodes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_predictors import assert_sampling_is_valid_and_seeded
from test_train_video_model import data, load_checkpoint, one_thread, save_tokenizer  # noqa: F401  (fixtures)

from worldrl.config import load_config
from worldrl.models.predictors import TECO, build_video_model, load_video_model
from worldrl.models.tokenizers import load_tokenizer
from worldrl.training import train_video_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "codebook_size": 16, "latent_shape": [4, 4], "context": 3, "embed_dim": 8, "depths": [8, 16],
    "encoder_blocks": 1, "decoder_blocks": 1, "downsample": 2,
    "quantizer": {"codebook_size": 8, "dim": 4, "l2_normalize": True},
    "transformer": {"hidden": 16, "ffn": 32, "heads": 2, "layers": 2},
    "prior": {"hidden": 16, "ffn": 32, "heads": 2, "layers": 1},
    "likelihood_steps": 2, "sample_steps": 2, "revise_rounds": 1,
}
"""4x4 codes -> 2x2 latents of 8 codes -> one temporal token per frame; windows [1, 0] (context 3)."""


def make(seed: int = 0, perturb: bool = False, **config) -> TECO:
    """A tiny TECO in eval mode; ``perturb`` adds noise to every weight (action and task terms start at 0)."""
    torch.manual_seed(seed)
    model = build_video_model({"type": "teco", **TINY, **config}).eval()
    if perturb:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def episode(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 16, (batch, length, 4, 4), generator=torch.Generator().manual_seed(seed))


def test_config_checks_and_shapes():
    model = make()
    assert model.z_shape == (2, 2) and model.tokens_per_frame == 1 and model.windows == [1, 0]
    assert model.cache_span == 2
    with pytest.raises(ValueError, match="context >= 2"):
        make(context=1)
    with pytest.raises(ValueError, match="divisible"):
        make(downsample=4)


def test_causal_and_context_is_exact():
    """Frame t depends on exactly frames t-3 .. t-1: changing frame 2 moves frames 2..5 only."""
    model, codes = make(perturb=True), episode()
    base = model.log_prob(codes).frame
    changed = codes.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 16
    other = model.log_prob(changed).frame
    assert torch.equal(other[:, :2], base[:, :2])
    assert ((other[:, 2:6] - base[:, 2:6]).abs() > 1e-4).all()
    assert torch.equal(other[:, 6], base[:, 6])


@pytest.mark.parametrize("stride", [1, 2])
def test_log_prob_does_not_depend_on_chunk_and_equals_streaming(stride):
    model, codes = make(perturb=True, stride=stride), episode()
    base = model.log_prob(codes, per_code=True)
    for chunk in (1, 3):
        torch.testing.assert_close(model.log_prob(codes, chunk=chunk).frame, base.frame, atol=1e-4, rtol=1e-4)
    state, scores = model.init_state(2), []
    for t in range(codes.shape[1]):
        state, score = model.step(state, codes[:, t], per_code=True)
        scores.append(score)
    torch.testing.assert_close(torch.stack(scores, 1), base.code, atol=1e-4, rtol=1e-4)
    assert base.code.shape == codes.shape and (base.frame < 0).all()
    assert base.has_context[0].tolist() == [False] * stride + [True] * (7 - stride)


def test_streaming_features_equal_the_training_pass():
    model, codes = make(perturb=True, drop_loss=0.9), episode(length=5)
    _, _, features = model.loss_and_features(codes)
    assert features.shape == (2, 5, model.feature_dim)
    state = model.init_state(2)
    for t in range(5):
        state, _ = model.step(state, codes[:, t])
        torch.testing.assert_close(model.frame_features(state), features[:, t], atol=1e-5, rtol=1e-5)
    state, _ = model.sample_step(state)
    assert model.frame_features(state).shape == (2, model.feature_dim)


def test_score_is_decoder_plus_prior_estimate():
    model, codes = make(perturb=True), episode()
    full = model.log_prob(codes).frame
    model.config.score_prior = False
    decoder = model.log_prob(codes).frame
    assert (decoder > full).all() and (decoder < 0).all()


def test_per_row_reset_in_a_streaming_batch():
    model, codes = make(perturb=True), episode(length=6)
    state = model.init_state(2)
    for t in range(5):
        state, _ = model.step(state, codes[:, t])
    model.reset_state(state, torch.tensor([True, False]))
    state, score = model.step(state, codes[:, 5])
    fresh = model.log_prob(codes[:1, 5:6]).frame[0, 0]
    full = model.log_prob(codes[1:]).frame[0, 5]
    torch.testing.assert_close(score, torch.stack([fresh, full]), atol=1e-4, rtol=1e-4)


def test_drop_loss_decodes_the_chosen_subset_only():
    model = make(drop_loss=0.5).train()
    batch_sizes = []
    model.decoder.register_forward_hook(lambda module, args, out: batch_sizes.append(out.shape[0]))
    model.prior.register_forward_hook(lambda module, args, out: batch_sizes.append(out.shape[0]))
    loss, stats = model.loss(episode(batch=3, length=6))
    assert batch_sizes == [3 * 3, 3 * 3] and torch.isfinite(loss) and stats["nats_per_code"] > 0
    keep = model.kept_frames(4, 10, torch.device("cpu"))
    assert keep.shape == (4, 5) and all(len(set(row.tolist())) == 5 for row in keep)
    assert torch.equal(keep, keep.sort(-1).values)
    assert make(drop_loss=0.9).train().kept_frames(2, 4, torch.device("cpu")).shape == (2, 1)
    assert make(drop_loss=0.9).kept_frames(2, 4, torch.device("cpu")).shape == (2, 4)  # eval: every frame


def test_task_and_action_conditioning_change_the_score():
    model = make(perturb=True, num_tasks=2, action_dim=2)
    codes = episode(length=4)
    actions = torch.randn(2, 4, 2, generator=torch.Generator().manual_seed(0))
    task0 = model.log_prob(codes, task=torch.tensor([0, 0]), actions=actions).frame
    task1 = model.log_prob(codes, task=torch.tensor([1, 1]), actions=actions).frame
    no_action = model.log_prob(codes, task=torch.tensor([0, 0])).frame
    other = model.log_prob(codes, task=torch.tensor([0, 0]), actions=actions.flip(1)).frame
    assert (task0 - task1).abs().amax() > 1e-3
    assert (task0[:, 1:] - no_action[:, 1:]).abs().amin() > 1e-5
    assert (task0[:, 1:] - other[:, 1:]).abs().amax() > 1e-3
    with pytest.raises(ValueError):
        model.log_prob(codes, actions=actions)


def test_action_dropout_trains_the_null_action():
    model = make(action_dim=2, action_dropout=1.0).train()
    loss, _ = model.loss(episode(length=4), actions=torch.randn(2, 4, 2))
    loss.backward()
    assert model.null_action.grad.abs().sum() > 0 and not model.action_embed.weight.grad.any()


@pytest.mark.parametrize("decoder_sampling", [False, True])
def test_sampling_is_valid_and_reproducible(decoder_sampling):
    model, codes = make(perturb=True, decoder_sampling=decoder_sampling), episode(length=2)
    assert_sampling_is_valid_and_seeded(model, codes, 16)


def test_sample_step_imagines_into_the_stream():
    model, codes = make(perturb=True, action_dim=2), episode(length=2)
    actions = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(0))
    state = model.init_state(2)
    state, _ = model.step(state, codes[:, 0], action=actions[:, 0])
    state, imagined = model.sample_step(state, action=actions[:, 1], generator=torch.Generator().manual_seed(0))
    assert imagined.shape == (2, 4, 4) and state.time.tolist() == [2, 2]
    state, score = model.step(state, codes[:, 1], action=actions[:, 2])
    expected = model.log_prob(torch.stack([codes[:, 0], imagined, codes[:, 1]], dim=1), actions=actions).frame[:, 2]
    torch.testing.assert_close(score, expected, atol=1e-4, rtol=1e-4)


def test_loss_decreases_when_overfitting_a_clip():
    model = make(drop_loss=0.0).train()
    clip = episode(batch=1, length=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = model.loss(clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_save_and_load_round_trip(tmp_path):
    model, codes = make(perturb=True, action_dim=2), episode()
    model.train().loss(codes)  # initialises the codebook from data and moves its EMA statistics
    model.eval()
    model.save(tmp_path / "teco")
    loaded = load_video_model(tmp_path / "teco")
    assert isinstance(loaded, TECO) and loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    torch.testing.assert_close(loaded.log_prob(codes).frame, model.log_prob(codes).frame)


def test_presets_build():
    cpu = load_config(os.path.join(ROOT, "configs", "video", "teco_cpu.yaml"))["model"]
    model = build_video_model(cpu)
    assert model.codebook_size == 512 and model.latent_shape == (8, 8) and model.z_shape == (4, 4)
    dmlab = load_config(os.path.join(ROOT, "configs", "video", "teco_dmlab.yaml"))["model"]
    assert dmlab["drop_loss"] == 0.9 and dmlab["transformer"]["hidden"] == 1024 and dmlab["prior"]["layers"] == 8


PRESET = os.path.join(ROOT, "configs", "video", "teco_cpu.yaml")
TRAIN_TINY = [f"model.{key}={value}" for key, value in {
    "codebook_size": 16, "latent_shape": "[4,4]", "context": 3, "embed_dim": 8, "depths": "[8,16]",
    "encoder_blocks": 1, "decoder_blocks": 1, "downsample": 2, "quantizer.codebook_size": 8,
    "quantizer.dim": 4, "transformer.hidden": 16, "transformer.ffn": 32, "transformer.heads": 2,
    "transformer.layers": 2, "prior.hidden": 16, "prior.ffn": 32, "prior.heads": 2, "prior.layers": 1,
    "likelihood_steps": 2, "sample_steps": 2,
}.items()] + ["train.batch_size=4", "train.lr=3e-3", "train.steps=4", "train.val_fraction=0.3", "train.log_every=2",
              "train.eval_every=2", "train.eval_batches=1", "train.sample_every=4", "train.sample_count=2",
              "train.checkpoint_every=4", "train.encode_frames=8"]
"""The trainer's overrides of teco_cpu.yaml for the tiny model (``TINY``) on the 4x4 codes of ``save_tokenizer``."""


def test_shapes_through_every_component():
    """8x8 codes -> 4x4 latents (two depths) -> 2x2 temporal tokens per frame (downsample 2)."""
    model = make(latent_shape=[8, 8])
    batch, frames, codes = 2, 3, torch.randint(0, 16, (2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    assert model.z_shape == (4, 4) and model.grid == (2, 2) and model.tokens_per_frame == 4
    flat = codes.flatten(0, 1)
    encoded = model.encode(flat, torch.zeros_like(flat), torch.arange(batch * frames) % frames > 0)
    assert encoded.quantized.shape == encoded.latent.shape == (batch * frames, 4, 4, 4)
    assert encoded.indices.shape == (batch * frames, 4, 4) and int(encoded.indices.max()) < 8
    previous = encoded.latent.unflatten(0, (batch, frames))
    tokens = model.temporal_tokens(previous, torch.ones(batch, frames, dtype=torch.bool), None)
    assert tokens.shape == (batch, frames * 4, 16)
    context = model.context_maps(tokens.view(batch * frames, 4, 16))
    assert context.shape == (batch * frames, 16, 4, 4)
    assert model.decoder_logits(encoded.quantized, context).shape == (batch * frames, 8, 8, 16)
    masked = torch.zeros(batch * frames, 16, dtype=torch.bool)
    prior = model.prior_logits(encoded.indices.flatten(1), masked, model.prior_inputs(context), None)
    assert prior.shape == (batch * frames, 16, 8)
    assert model.log_prob(codes, per_code=True).code.shape == codes.shape
    assert model.loss_and_features(codes)[2].shape == (batch, frames, model.feature_dim)


def test_a_tiny_teco_overfits_real_episodes(dmc_video, tmp_path):
    """Codes of 40 real 32x32 cartpole frames (random-weight tokenizer, 4x4 codes of 16); 40 Adam steps on every
    4-frame clip of the first 30 raise the mean frame log_prob of those frames from about -56.0 to -32.0 nats
    (uniform codes: -16 ln 16 = -44.4), and of the 10 held-out frames from about -56.4 to -36.1 (measured);
    asserted: a rise of over half of that."""
    tokenizer = load_tokenizer(save_tokenizer(tmp_path / "tokenizer")).eval()
    frames = torch.from_numpy(np.asarray((dmc_video(40, size=32) + 1) * 127.5).round().astype(np.uint8))
    with torch.no_grad():
        codes = tokenizer.encode(frames.permute(0, 2, 3, 4, 1))[0]  # [40, 4, 4]
    train, val = codes[:30], codes[30:]
    model = make(drop_loss=0.0)
    before = model.eval().log_prob(train[None]).frame.mean()
    val_before = model.log_prob(val[None]).frame.mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    clips = train.unfold(0, 4, 1).permute(0, 3, 1, 2)  # every 4-frame clip
    for _ in range(40):
        loss, _ = model.loss(clips)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.eval().log_prob(train[None]).frame.mean()
    val_after = model.log_prob(val[None]).frame.mean()
    assert after > before + 12 and val_after > val_before + 10, [float(v) for v in (before, after, val_before,
                                                                                   val_after)]


def test_trainer_runs_teco(data, tmp_path):  # noqa: F811
    tokenizer = save_tokenizer(tmp_path / "tokenizer")
    config = load_config(PRESET, TRAIN_TINY)
    metrics = train_video_model(config, tokenizer, data, tmp_path / "run", "cpu", progress=False)
    assert metrics["step"] == 4 and metrics["val_frame_log_likelihood"] < 0
    assert {"recon_loss", "prior_loss", "vq_loss"} <= set(metrics["history"][-1])
    assert isinstance(load_video_model(tmp_path / "run" / "video_model"), TECO)


def test_trainer_runs_teco_in_bf16(data, tmp_path):  # noqa: F811
    tokenizer = save_tokenizer(tmp_path / "tokenizer")
    config = load_config(PRESET, [*TRAIN_TINY, "train.bf16=true", "train.steps=3", "train.log_every=1"])
    metrics = train_video_model(config, tokenizer, data, tmp_path / "run", "cpu", progress=False)
    assert metrics["step"] == 3 and np.isfinite(metrics["val_frame_log_likelihood"])
    assert all(np.isfinite(entry["loss"]) for entry in metrics["history"])
    model = load_video_model(tmp_path / "run" / "video_model")
    assert isinstance(model, TECO) and all(p.dtype == torch.float32 for p in model.parameters())


def test_two_rank_ddp_teco_run_stays_in_sync(data, tmp_path):  # noqa: F811
    tokenizer, run = save_tokenizer(tmp_path / "tokenizer"), tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "worldrl.cli", "train-video-model", "--tokenizer", str(tokenizer), "--data", *data,
        "--config", PRESET, "--out", str(run), "--device", "cpu", "--no-progress", *TRAIN_TINY, "train.steps=4",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 steps on 2 ranks (in sync)" in result.stdout
    checkpoint = load_checkpoint(run)
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng"]) == 2
    assert isinstance(load_video_model(run / "video_model"), TECO)
