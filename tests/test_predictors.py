"""The VideoModel interface on VideoGPT: one definition of context, exact streaming, conditioning, checkpoints."""

import json

import numpy as np
import pytest
import torch

from worldrl.models.predictors import VideoGPT, build_video_model, load_video_model
from worldrl.models.predictors.transformer import layer_windows
from worldrl.models.tokenizers import CheckpointError, build_tokenizer

CODES, LATENT = 16, (3, 3)


def tiny(context: int = 3, stride: int = 1, layers: int = 2, seed: int = 0, **extra) -> VideoGPT:
    torch.manual_seed(seed)
    config = {"type": "videogpt", "codebook_size": CODES, "latent_shape": list(LATENT), "context": context,
              "stride": stride, "transformer": {"hidden": 32, "ffn": 64, "heads": 4, "layers": layers}, **extra}
    return build_video_model(config).eval()


def random_codes(batch: int, frames: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, CODES, (batch, frames, *LATENT), generator=torch.Generator().manual_seed(seed))


def stream(model, codes, **kwargs) -> torch.Tensor:
    state = model.init_state(codes.shape[0])
    scores = []
    for t in range(codes.shape[1]):
        state, logp = model.step(state, codes[:, t], **kwargs)
        scores.append(logp)
    return torch.stack(scores, 1)


def assert_sampling_is_valid_and_seeded(model, codes: torch.Tensor, codebook_size: int) -> None:
    """``model.sample`` continues ``codes [B, T, h, w]`` by 3 frames of codes in range, repeats for a seed, differs
    across seeds, is seed-free at temperature 0, and samples from an empty context."""

    def sample(seed: int, temperature: float = 1.0) -> torch.Tensor:
        return model.sample(codes, 3, temperature=temperature, top_k=4, generator=torch.Generator().manual_seed(seed))

    first = sample(0)
    batch, _, *latent = codes.shape
    assert first.shape == (batch, 3, *latent) and first.dtype == torch.long
    assert 0 <= int(first.min()) and int(first.max()) < codebook_size
    assert torch.equal(first, sample(0))
    assert not torch.equal(first, sample(1))
    assert torch.equal(sample(0, temperature=0.0), sample(1, temperature=0.0))
    assert model.sample(codes[:, :0], 1).shape == (batch, 1, *latent)


def test_layer_windows_add_up_to_the_context():
    assert layer_windows(15, 8) == [2, 2, 2, 2, 2, 2, 2, 1]
    assert layer_windows(3, 8) == [1, 1, 1, 0, 0, 0, 0, 0]
    assert sum(layer_windows(7, 3)) == 7


def test_a_frame_depends_on_exactly_its_context():
    model, codes = tiny(context=3, layers=3), random_codes(2, 12)
    base = model.log_prob(codes).frame
    changed = codes.clone()
    changed[:, 5] = (changed[:, 5] + 1) % CODES
    after = model.log_prob(changed).frame
    assert torch.equal(after[:, :5], base[:, :5])  # the past never sees the future
    assert (after[:, 5:9] - base[:, 5:9]).abs().min() > 0  # the frame itself and the 3 frames after it
    assert torch.allclose(after[:, 9:], base[:, 9:], atol=1e-5)  # more than `context` frames later: no effect


def test_streaming_batch_chunks_and_naive_windows_agree():
    model, codes = tiny(context=3), random_codes(2, 13)
    full = model.log_prob(codes)
    assert not full.has_context[:, 0].any() and full.has_context[:, 1:].all()
    for chunk in (1, 4, 5):
        torch.testing.assert_close(model.log_prob(codes, chunk=chunk).frame, full.frame, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(stream(model, codes), full.frame, rtol=1e-4, atol=1e-4)
    for t in (2, 3, 8, 12):  # naive: recompute the window of the frame and its context alone
        window = model.log_prob(codes[:, max(0, t - 3) : t + 1]).frame[:, -1]
        torch.testing.assert_close(window, full.frame[:, t], rtol=1e-4, atol=1e-4)


def test_streaming_equals_the_training_objective():
    model, codes = tiny(context=3), random_codes(3, 4)
    loss, stats = model.loss(codes)
    per_frame = model.log_prob(codes).frame
    torch.testing.assert_close(-per_frame.sum() / codes.numel(), loss.detach(), rtol=1e-5, atol=1e-5)
    assert stats["bits_per_code"] == pytest.approx(loss.item() / np.log(2), rel=1e-5)


def test_strided_context():
    model, codes = tiny(context=2, stride=3), random_codes(2, 14)
    full = model.log_prob(codes, chunk=4)
    assert full.has_context[0].tolist() == [False] * 3 + [True] * 11
    torch.testing.assert_close(stream(model, codes), full.frame, rtol=1e-4, atol=1e-4)
    clip = codes[:, 2::3][:, :3]  # a training clip of context + 1 frames, 3 apart
    with torch.no_grad():
        logp = model.logits(clip).log_softmax(-1).gather(-1, clip.flatten(2)[..., None])[..., 0].sum(-1)
    torch.testing.assert_close(logp, full.frame[:, 2::3][:, :3], rtol=1e-4, atol=1e-4)
    changed = codes.clone()
    changed[:, 4] = (changed[:, 4] + 1) % CODES  # another phase than frame 5's context (2, -1)
    assert torch.allclose(model.log_prob(changed).frame[:, 5], full.frame[:, 5], atol=1e-5)


def test_per_row_reset_in_a_streaming_batch():
    model, codes = tiny(context=3), random_codes(2, 10)
    state = model.init_state(2)
    for t in range(6):
        state, _ = model.step(state, codes[:, t])
    model.reset_state(state, torch.tensor([True, False]))
    assert state.time.tolist() == [0, 6]
    scores = []
    for t in range(6, 10):
        state, logp = model.step(state, codes[:, t])
        scores.append(logp)
    scores = torch.stack(scores, 1)
    torch.testing.assert_close(scores[0], model.log_prob(codes[:1, 6:]).frame[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scores[1], model.log_prob(codes[1:]).frame[0, 6:], rtol=1e-4, atol=1e-4)


def test_task_and_action_conditioning_change_the_likelihood():
    model, codes = tiny(num_tasks=3), random_codes(2, 5)
    for name in ("task_gain", "task_bias"):  # trained models have non-zero task terms; fresh ones start at zero
        for module in model.modules():
            if getattr(module, name, None) is not None:
                torch.nn.init.normal_(getattr(module, name).weight, std=0.5)
    a = model.log_prob(codes, task=torch.tensor([0, 0])).frame
    b = model.log_prob(codes, task=torch.tensor([1, 2])).frame
    assert (a - b).abs().min() > 0
    torch.testing.assert_close(stream(model, codes, task=torch.tensor([1, 2])), b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="task ids"):
        model.log_prob(codes)
    with pytest.raises(ValueError, match=r"ids in \[0, 3\)"):
        model.log_prob(codes, task=torch.tensor([0, 3]))

    model = tiny(action_dim=2)
    actions = torch.randn(2, 5, 2)
    with_actions = model.log_prob(codes, actions=actions).frame
    assert (with_actions - model.log_prob(codes, actions=-actions).frame).abs().min() > 0
    assert torch.isfinite(model.log_prob(codes).frame).all()  # no actions: the learned "no action" embedding
    state, scores = model.init_state(2), []
    for t in range(5):
        state, logp = model.step(state, codes[:, t], action=actions[:, t])
        scores.append(logp)
    torch.testing.assert_close(torch.stack(scores, 1), with_actions, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"actions must be \[2, 5, 2\]"):
        model.log_prob(codes, actions=torch.randn(2, 5, 3))
    with pytest.raises(ValueError, match="stride 1"):
        tiny(stride=2, action_dim=2)


def test_bad_codes_are_rejected_with_the_problem_named():
    model = tiny()
    with pytest.raises(TypeError, match="integer"):
        model.log_prob(torch.zeros(1, 2, *LATENT))
    with pytest.raises(ValueError, match=r"\(h, w\) = \(3, 3\)"):
        model.log_prob(torch.zeros(1, 2, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model.log_prob(torch.full((1, 2, *LATENT), 16))


def test_samples_have_valid_codes_and_are_reproducible():
    model, context = tiny(context=2), random_codes(2, 3)
    first = model.sample(context, 4, temperature=1.0, top_k=4, generator=torch.Generator().manual_seed(3))
    again = model.sample(context, 4, temperature=1.0, top_k=4, generator=torch.Generator().manual_seed(3))
    assert first.shape == (2, 4, *LATENT) and first.dtype == torch.long
    assert int(first.min()) >= 0 and int(first.max()) < CODES
    assert torch.equal(first, again)
    greedy = model.sample(context, 2, temperature=0.0)
    assert torch.equal(greedy, model.sample(context, 2, temperature=0.0))
    unconditional = model.sample(context[:, :0], 2, generator=torch.Generator().manual_seed(0))
    assert unconditional.shape == (2, 2, *LATENT)


def test_greedy_samples_follow_the_model():
    """The greedy frame's codes are each the argmax of the model's own logits given the codes before them."""
    model, context = tiny(context=2), random_codes(1, 2)
    frame = model.sample(context, 1, temperature=0.0)
    clip = torch.cat([context, frame], dim=1)
    with torch.no_grad():
        logits = model.logits(clip)[:, -1]
    assert torch.equal(logits.argmax(-1), frame.flatten(1))


def test_simulator_steps_continue_the_stream():
    model = tiny(context=2, action_dim=2)
    state = model.init_state(3)
    codes = random_codes(3, 2)
    for t in range(2):
        state, _ = model.step(state, codes[:, t])
    state, imagined = model.sample_step(state, action=torch.randn(3, 2), generator=torch.Generator().manual_seed(0))
    assert imagined.shape == (3, *LATENT) and state.time.tolist() == [3, 3, 3]


def test_a_tiny_model_learns_real_episodes(dmc_video):
    """Codes of real cartpole frames (random-weight tokenizer): held-out log-likelihood rises from about -179 nats
    (uniform over 16 codes) to above 70% of that (measured: about -53)."""
    tokenizer = build_tokenizer({"type": "vqgan", "frame_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2],
                                 "num_res_blocks": 1, "attention": False, "z_channels": 8,
                                 "quantizer": {"type": "vq", "codebook_size": 16, "dim": 8}}).eval()
    frames = torch.from_numpy(np.asarray((dmc_video(40, size=32) + 1) * 127.5).round().astype(np.uint8))
    codes = tokenizer.encode(frames.permute(0, 2, 3, 4, 1))[0]  # [40, 8, 8]
    train, val = codes[:30], codes[30:]
    torch.manual_seed(0)
    model = build_video_model({"type": "videogpt", "codebook_size": 16, "latent_shape": [8, 8], "context": 3,
                               "transformer": {"hidden": 32, "ffn": 64, "heads": 4, "layers": 2}})
    before = model.eval().log_prob(val[None]).frame.mean()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    clips = train.unfold(0, 4, 1).permute(0, 3, 1, 2)  # every 4-frame clip
    for _ in range(60):
        loss, _ = model.loss(clips)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.eval().log_prob(val[None]).frame.mean()
    assert after > before * 0.7, (float(before), float(after))


def test_save_load_round_trip_and_tokenizer_check(tmp_path):
    model, codes = tiny(context=2, num_tasks=2), random_codes(2, 6)
    task = torch.tensor([0, 1])
    tokenizer = build_tokenizer({"type": "vqgan", "frame_size": 12, "base_channels": 4, "channel_mult": [1, 1, 1],
                                 "num_res_blocks": 1, "attention": False, "z_channels": 4,
                                 "quantizer": {"type": "fsq", "levels": [4, 4]}})
    assert tokenizer.codebook_size == CODES and tokenizer.latent_shape == LATENT
    model.save(tmp_path / "model", tokenizer=tokenizer)
    loaded = load_video_model(tmp_path / "model")
    assert isinstance(loaded, VideoGPT) and (tmp_path / "model" / "tokenizer").is_dir()
    assert torch.equal(loaded.log_prob(codes, task=task).frame, model.log_prob(codes, task=task).frame)

    other = build_tokenizer({"type": "vqgan", "frame_size": 12, "base_channels": 4, "channel_mult": [1, 1, 1],
                             "num_res_blocks": 1, "attention": False, "z_channels": 4,
                             "quantizer": {"type": "vq", "codebook_size": 32, "dim": 4}})
    with pytest.raises(CheckpointError, match="codebook of 16 codes but the tokenizer 32"):
        load_video_model(tmp_path / "model", tokenizer=other)
    with pytest.raises(CheckpointError, match="codebook of 16 codes but the tokenizer 32"):
        model.save(tmp_path / "mismatch", tokenizer=other)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="video_model.json is missing"):
        load_video_model(tmp_path)
    tiny().save(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_video_model(tmp_path)
    (tmp_path / "video_model.json").write_text("{")
    with pytest.raises(CheckpointError, match="corrupt video model config"):
        load_video_model(tmp_path)
    (tmp_path / "video_model.json").write_text(json.dumps({"kind": "nope", "config": {}}))
    with pytest.raises(CheckpointError, match="unknown video model kind 'nope'"):
        load_video_model(tmp_path)


def test_bf16_scores_stay_close_to_fp32():
    model, codes = tiny(context=3), random_codes(2, 8)
    fp32 = model.log_prob(codes).frame
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.log_prob(codes).frame
    assert bf16.dtype == torch.float32
    assert (bf16 - fp32).abs().max() < 0.05 * fp32.abs().mean()


def test_rows_that_do_not_observe_stay_where_they_are():
    model, codes = tiny(context=3), random_codes(2, 9)
    state, scores = model.init_state(2), []
    for t in range(9):  # row 1 skips its turn at every odd step, then sees the same frames as row 0
        state, logp = model.step(state, codes[:, t], rows=torch.tensor([True, True]))
        scores.append(logp)
        if t % 2:
            state, idle = model.step(state, codes[:, (t + 5) % 9], rows=torch.tensor([True, False]))
            assert torch.isnan(idle[1]) and not torch.isnan(idle[0])
    assert state.time.tolist() == [13, 9]
    torch.testing.assert_close(torch.stack(scores, 1)[1], model.log_prob(codes).frame[1], rtol=1e-4, atol=1e-4)


OBSERVE_MODELS = {
    "videogpt": {"codebook_size": CODES, "latent_shape": list(LATENT), "context": 3,
                 "transformer": {"hidden": 32, "ffn": 64, "heads": 4, "layers": 2}},
    "maskgit": {"codebook_size": CODES, "latent_shape": list(LATENT), "context": 3,
                "transformer": {"hidden": 32, "ffn": 64, "heads": 4, "layers": 2}},
    "teco": {"codebook_size": CODES, "latent_shape": [4, 4], "context": 3, "embed_dim": 8, "depths": [8, 16],
             "encoder_blocks": 1, "decoder_blocks": 1, "downsample": 2,
             "quantizer": {"codebook_size": 8, "dim": 4, "l2_normalize": True},
             "transformer": {"hidden": 16, "ffn": 32, "heads": 2, "layers": 2},
             "prior": {"hidden": 16, "ffn": 32, "heads": 2, "layers": 1},
             "likelihood_steps": 2, "sample_steps": 2, "revise_rounds": 1},
}


def observe_model(kind: str):
    """A tiny action-conditioned model of ``kind`` with every weight perturbed (action terms start at 0)."""
    torch.manual_seed(0)
    model = build_video_model({"type": kind, **OBSERVE_MODELS[kind], "action_dim": 2}).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def assert_same_state(a, b) -> None:
    assert torch.equal(a.time, b.time) and torch.equal(a.cache.slot_time, b.cache.slot_time)
    for x, y in zip(a.cache.keys + a.cache.values, b.cache.keys + b.cache.values, strict=True):
        assert torch.equal(x, y)
    assert a.cache.slot_data.keys() == b.cache.slot_data.keys()
    for name in a.cache.slot_data:
        assert torch.equal(a.cache.slot_data[name], b.cache.slot_data[name])
    assert torch.equal(a.cache.features, b.cache.features)


@pytest.mark.parametrize("kind", sorted(OBSERVE_MODELS))
def test_observe_leaves_the_state_step_leaves(kind):
    model = observe_model(kind)
    h, w = OBSERVE_MODELS[kind]["latent_shape"]
    codes = torch.randint(0, CODES, (3, 6, h, w), generator=torch.Generator().manual_seed(1))
    actions = torch.randn(3, 6, 2, generator=torch.Generator().manual_seed(2))
    rows = [None, None, torch.tensor([True, False, True]), None]  # one call leaves row 1 idle
    stepped, observed = model.init_state(3), model.init_state(3)
    for t in range(4):
        stepped, _ = model.step(stepped, codes[:, t], action=actions[:, t], rows=rows[t])
        observed = model.observe(observed, codes[:, t], action=actions[:, t], rows=rows[t])
        assert_same_state(stepped, observed)
    assert torch.equal(model.frame_features(stepped), model.frame_features(observed))
    _, after_step = model.step(stepped, codes[:, 4], action=actions[:, 4])
    _, after_observe = model.step(observed, codes[:, 4], action=actions[:, 4])
    assert torch.equal(after_step, after_observe)
    sampled = [model.sample_step(state, action=actions[:, 5], generator=torch.Generator().manual_seed(3))[1]
               for state in (stepped, observed)]
    assert torch.equal(*sampled)
    assert_same_state(stepped, observed)
    context, generator = codes[:, :3], torch.Generator().manual_seed(4)
    expected = model.sample(context, 2, actions=actions[:, :5], generator=generator)
    state = model.init_state(3)
    for t in range(3):
        state, _ = model.step(state, context[:, t], action=actions[:, t])
    generator = torch.Generator().manual_seed(4)
    streamed = [model.sample_step(state, action=actions[:, t], generator=generator)[1] for t in (3, 4)]
    assert torch.equal(expected, torch.stack(streamed, 1))


def test_maskgit_observe_runs_one_pass_where_step_runs_the_likelihood_passes():
    model = observe_model("maskgit")
    calls = []
    model.transformer.register_forward_hook(lambda *_: calls.append(1))
    codes = torch.randint(0, CODES, (2, *LATENT), generator=torch.Generator().manual_seed(1))
    model.step(model.init_state(2), codes)
    stepped = len(calls)
    calls.clear()
    model.observe(model.init_state(2), codes)
    assert len(calls) == 1 and stepped == 1 + model.config.likelihood_steps
