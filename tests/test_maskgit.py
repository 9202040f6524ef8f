"""MaskGIT predictor: causality and exact context, streaming = batch scoring, the likelihood estimate, sampling,
training and checkpoints (tiny models)."""

from __future__ import annotations

import itertools

import pytest
import torch
from test_predictors import assert_sampling_is_valid_and_seeded

from worldrl.models.predictors import MaskGIT, build_video_model, load_video_model
from worldrl.models.predictors.maskgit import mask_schedule
from worldrl.models.predictors.transformer import FrameCache

TINY = {"hidden": 32, "ffn": 64, "heads": 4, "layers": 2}


def make(seed: int = 0, perturb: bool = False, **config) -> MaskGIT:
    """A tiny MaskGIT in eval mode; ``perturb`` adds noise to every weight (task and action terms start at 0)."""
    torch.manual_seed(seed)
    values = {"codebook_size": 16, "latent_shape": [3, 3], "context": 3, "transformer": TINY} | config
    model = build_video_model({"type": "maskgit", **values}).eval()
    if perturb:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return model


def episode(batch: int = 2, length: int = 6, codebook: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, codebook, (batch, length, 3, 3), generator=torch.Generator().manual_seed(seed))


def test_mask_schedule_is_cosine_and_reveals_every_code():
    assert mask_schedule(64, 8) == [62, 59, 53, 45, 35, 24, 12, 0]
    assert mask_schedule(3, 8) == [2, 1, 0]
    assert mask_schedule(9, 1) == [0]


def test_causal_and_context_is_exact():
    model, codes = make(), episode(length=7)
    base = model.log_prob(codes).frame
    changed = codes.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 16
    other = model.log_prob(changed).frame
    assert torch.equal(other[:, :2], base[:, :2])
    assert (other[:, 2:6] - base[:, 2:6]).abs().amax() > 1e-3
    assert torch.equal(other[:, 6], base[:, 6])


def test_training_pass_matches_cached_pass():
    model, codes = make(perturb=True), episode(length=4)
    masked = model.random_mask(2, 4)
    flat = codes.flatten(2)
    with torch.no_grad():
        full = model.logits(codes, masked)
        cache = FrameCache(2, 4, model.tokens_per_frame, codes.device)
        model._observe(cache, flat, torch.zeros(2, dtype=torch.long), None, None)
        cached = model._masked_logits(cache, flat, masked, torch.arange(4).expand(2, 4), None, None)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


def test_log_prob_does_not_depend_on_chunk_and_equals_streaming():
    model, codes = make(), episode(length=6)
    base = model.log_prob(codes, per_code=True)
    for chunk in (1, 4):
        torch.testing.assert_close(model.log_prob(codes, chunk=chunk).frame, base.frame, atol=1e-4, rtol=1e-4)
    state, scores = model.init_state(2), []
    for t in range(6):
        state, score = model.step(state, codes[:, t], per_code=True)
        scores.append(score)
    torch.testing.assert_close(torch.stack(scores, 1), base.code, atol=1e-4, rtol=1e-4)
    assert base.code.shape == codes.shape and (base.code < 0).all()
    assert base.has_context.tolist() == [[False] + [True] * 5] * 2


def test_likelihood_is_normalised():
    """The greedy-order estimate is a proper distribution: it sums to 1 over every possible frame."""
    model = make(perturb=True, codebook_size=3, latent_shape=[1, 3], context=1, likelihood_steps=2)
    frames = torch.tensor(list(itertools.product(range(3), repeat=3))).view(27, 1, 1, 3)
    codes = torch.cat([torch.tensor([2, 0, 1]).view(1, 1, 1, 3).expand(27, 1, 1, 3), frames], dim=1)
    scores = model.log_prob(codes).frame
    assert abs(float(scores[:, 1].logsumexp(0))) < 1e-4
    assert abs(float(model.log_prob(frames).frame[:, 0].logsumexp(0))) < 1e-4


def test_task_and_action_conditioning_change_the_likelihood():
    model = make(perturb=True, num_tasks=2, action_dim=2)
    codes = episode(length=3)
    actions = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(0))
    task0 = model.log_prob(codes, task=torch.tensor([0, 0]), actions=actions).frame
    task1 = model.log_prob(codes, task=torch.tensor([1, 1]), actions=actions).frame
    no_action = model.log_prob(codes, task=torch.tensor([0, 0])).frame
    assert (task0 - task1).abs().amax() > 1e-3
    assert (task0[:, 1:] - no_action[:, 1:]).abs().amax() > 1e-3
    with pytest.raises(ValueError):
        model.log_prob(codes)


def test_per_row_reset_in_a_streaming_batch():
    model, codes = make(), episode(length=6)
    state = model.init_state(2)
    for t in range(5):
        state, _ = model.step(state, codes[:, t])
    model.reset_state(state, torch.tensor([True, False]))
    state, score = model.step(state, codes[:, 5])
    fresh = model.log_prob(codes[:1, 5:6]).frame[0, 0]
    full = model.log_prob(codes[1:]).frame[0, 5]
    torch.testing.assert_close(score, torch.stack([fresh, full]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("revise_rounds", [0, 1])
def test_sampling_is_valid_and_reproducible(revise_rounds):
    model, codes = make(revise_rounds=revise_rounds), episode(length=2)
    assert_sampling_is_valid_and_seeded(model, codes, 16)


def test_sample_step_imagines_into_the_stream():
    model, codes = make(), episode(length=2)
    state = model.init_state(2)
    state, _ = model.step(state, codes[:, 0])
    state, imagined = model.sample_step(state, generator=torch.Generator().manual_seed(0))
    assert imagined.shape == (2, 3, 3) and state.time.tolist() == [2, 2]
    state, score = model.step(state, codes[:, 1])
    expected = model.log_prob(torch.stack([codes[:, 0], imagined, codes[:, 1]], dim=1)).frame[:, 2]
    torch.testing.assert_close(score, expected, atol=1e-4, rtol=1e-4)


def test_loss_decreases_when_overfitting_a_clip():
    model = make(context=2).train()
    clip = episode(batch=1, length=3)
    before = model.log_prob(clip).frame.sum()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss, stats = model.loss(clip)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert torch.isfinite(loss) and set(stats) >= {"nats_per_code", "bits_per_code"}
    model.eval()
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
    assert model.log_prob(clip).frame.sum() > before + 10


def test_save_load_round_trip(tmp_path):
    model = make(perturb=True, num_tasks=2, likelihood_steps=4, revise_rounds=2)
    model.save(tmp_path)
    loaded = load_video_model(tmp_path)
    assert isinstance(loaded, MaskGIT) and loaded.config == model.config
    codes, task = episode(length=3), torch.tensor([0, 1])
    assert torch.equal(loaded.log_prob(codes, task=task).frame, model.log_prob(codes, task=task).frame)
