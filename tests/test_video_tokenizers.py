"""VideoGPT's 3D VQ-VAE and the temporally causal (MAGVIT-v2) tokenizer: shapes, causality, attention, checkpoints."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from worldrl.config import load_yaml
from worldrl.models.quantizers import QuantizerConfig
from worldrl.models.tokenizers import build_tokenizer, load_tokenizer
from worldrl.models.tokenizers.base import frames_to_float
from worldrl.models.tokenizers.causal import CausalTokenizerConfig, CausalVideoTokenizer
from worldrl.models.tokenizers.videogpt import (
    AxialAttention,
    VideoVQVAE,
    VideoVQVAEConfig,
    data_variance,
    normalized_mse,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "tokenizer"


def has_quantizer(kind: str) -> bool:
    return importlib.util.find_spec(f"worldrl.models.quantizers.{kind}") is not None


def quantizer(kind: str) -> QuantizerConfig:
    if kind != "fsq" and not has_quantizer(kind):
        pytest.skip(f"the {kind} quantizer is not implemented yet")
    return {
        "fsq": QuantizerConfig(type="fsq", levels=(5, 5, 5)),
        "vq": QuantizerConfig(type="vq", codebook_size=32, dim=8),
        "lfq": QuantizerConfig(type="lfq", codebook_size=2**4),
    }[kind]


def videogpt(kind: str = "fsq", **overrides) -> VideoVQVAE:
    torch.manual_seed(0)
    config = dict(frame_size=16, hidden_channels=16, res_channels=8, num_res_layers=1, downsample=(2, 4, 4))
    config.update(max_frames=8, quantizer=quantizer(kind), **overrides)
    return VideoVQVAE(VideoVQVAEConfig(**config)).eval()


def causal(temporal_downsample: int = 1, kind: str = "fsq", **overrides) -> CausalVideoTokenizer:
    torch.manual_seed(0)
    config = dict(frame_size=16, base_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, norm_groups=4)
    config.update(temporal_downsample=temporal_downsample, quantizer=quantizer(kind), **overrides)
    return CausalVideoTokenizer(CausalTokenizerConfig(**config)).eval()


def random_frames(batch: int, frames: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, generator=generator)


# Shapes -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["fsq", "vq"])
def test_videogpt_shapes(kind):
    model = videogpt(kind)
    frames = random_frames(2, 8)
    codes = model.encode(frames)
    assert codes.dtype == torch.int64 and codes.shape == (2, 4, 4, 4)
    assert model.latent_shape == (4, 4) and model.frames_per_code == 2 and model.num_code_frames(8) == 4
    decoded = model.decode(codes)
    assert decoded.dtype == torch.uint8 and decoded.shape == frames.shape


@pytest.mark.parametrize("kind", ["fsq", "lfq"])
@pytest.mark.parametrize("temporal_downsample", [1, 2, 4])
def test_causal_shapes(temporal_downsample, kind):
    model = causal(temporal_downsample, kind)
    frames = random_frames(2, 1 + 2 * temporal_downsample)
    codes = model.encode(frames)
    assert codes.dtype == torch.int64 and codes.shape == (2, 3, 4, 4)
    assert model.num_frames(3) == frames.shape[1] and model.num_code_frames(frames.shape[1]) == 3
    decoded = model.decode(codes)
    assert decoded.dtype == torch.uint8 and decoded.shape == frames.shape
    assert model.encode(frames[:, :1]).shape == (2, 1, 4, 4)  # a single image is a valid clip


def test_invalid_clip_lengths_raise():
    with pytest.raises(ValueError, match="multiple of 2"):
        videogpt().encode(random_frames(1, 3))
    with pytest.raises(ValueError, match="max_frames"):
        videogpt().encode(random_frames(1, 10))
    with pytest.raises(ValueError, match="1 \\+ k"):
        causal(2).encode(random_frames(1, 4))
    with pytest.raises(ValueError, match="1 \\+ k"):
        causal(2)(torch.zeros(1, 3, 6, 16, 16))
    with pytest.raises(ValueError, match="power of two"):
        CausalTokenizerConfig(temporal_downsample=3)
    with pytest.raises(ValueError, match="power"):
        VideoVQVAEConfig(downsample=(3, 4, 4))


# Causality ----------------------------------------------------------------------------------------------------------
def earlier_steps_change(function, video: torch.Tensor, last_frame: int, steps: int) -> tuple[bool, bool]:
    """Replace frames after ``last_frame``: do the first ``steps`` outputs (along dim 2) change, and do the others?"""
    changed = video.clone()
    changed[:, :, last_frame + 1 :] = torch.rand_like(changed[:, :, last_frame + 1 :]) * 2 - 1
    with torch.no_grad():
        before, after = function(video), function(changed)
    early = not torch.allclose(before[:, :, :steps], after[:, :, :steps], rtol=0, atol=1e-6)
    late = not torch.allclose(before[:, :, steps:], after[:, :, steps:], rtol=0, atol=1e-6)
    return early, late


def codes(model, video: torch.Tensor) -> torch.Tensor:
    """Code indices as ``[B, 1, T', h, w]``, so that step ``j`` is ``[:, :, j]`` as for features."""
    return model.quantizer(model.encode_features(video)).indices.unsqueeze(1)


@pytest.mark.parametrize("temporal_downsample", [1, 2, 4])
def test_causal_encoder_ignores_future_frames(temporal_downsample):
    s = temporal_downsample
    model = causal(s)
    video = torch.rand(2, 3, 1 + 3 * s, 16, 16) * 2 - 1
    for step in range(3):
        # code step j covers frames up to j * s; frames after it must not matter for steps <= j.
        early, late = earlier_steps_change(model.encode_features, video, step * s, step + 1)
        assert not early and late
        assert not earlier_steps_change(lambda v: codes(model, v), video, step * s, step + 1)[0]
        # end to end: reconstructed frames <= step * s come from code steps <= step
        assert not earlier_steps_change(lambda v: model(v).reconstruction, video, step * s, step * s + 1)[0]


def test_videogpt_sees_the_future():
    """The same check fails for VideoGPT: its first code step depends on the last frames (it is not causal)."""
    model = videogpt()
    video = torch.rand(2, 3, 8, 16, 16) * 2 - 1
    early, _ = earlier_steps_change(model.encode_features, video, last_frame=1, steps=1)
    assert early


@pytest.mark.parametrize("temporal_downsample", [1, 2, 4])
def test_causal_decoder_ignores_future_codes(temporal_downsample):
    s = temporal_downsample
    model = causal(s)
    features = model.quantizer.indices_to_codes(torch.randint(0, model.codebook_size, (2, 4, 4, 4)))
    for step in range(3):
        changed = features.clone()
        later = torch.randint(0, model.codebook_size, (2, 3 - step, 4, 4))
        changed[:, :, step + 1 :] = model.quantizer.indices_to_codes(later)
        with torch.no_grad():
            before, after = model.decode_features(features), model.decode_features(changed)
        assert before.shape[2] == model.num_frames(4)
        # frames 0 .. step * s come from steps <= step only; frame step * s + 1 belongs to the next step.
        assert torch.allclose(before[:, :, : step * s + 1], after[:, :, : step * s + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(before[:, :, step * s + 1], after[:, :, step * s + 1])


@pytest.mark.parametrize("temporal_downsample", [1, 2])
def test_causal_gradients_do_not_reach_the_future(temporal_downsample):
    s = temporal_downsample
    model = causal(s)
    video = (torch.rand(1, 3, 1 + 3 * s, 16, 16) * 2 - 1).requires_grad_()
    model.encode_features(video)[:, :, 1].square().sum().backward()
    assert video.grad[:, :, s + 1 :].abs().max() == 0
    assert video.grad[:, :, : s + 1].abs().amax(dim=(0, 1, 3, 4)).gt(0).all()

    features = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    model.decode_features(features)[:, :, s].square().sum().backward()  # frame s is the last of step 1
    assert features.grad[:, :, 2:].abs().max() == 0
    assert features.grad[:, :, :2].abs().amax(dim=(0, 1, 3, 4)).gt(0).all()


def test_frame_group_norm_does_not_mix_time():
    model = causal()
    norm = model.encoder[1].body[0]
    x = torch.randn(2, 8, 5, 4, 4)
    y = norm(x)
    x2 = x.clone()
    x2[:, :, 3:] *= 10
    assert torch.equal(norm(x2)[:, :, :3], y[:, :, :3])
    assert torch.allclose(y[:, :, 2].mean(dim=(2, 3)).reshape(2, 4, 2).mean(-1), torch.zeros(2, 4), atol=1e-5)


# Axial attention ----------------------------------------------------------------------------------------------------
def test_axial_attention_attends_along_its_axes():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, 8)
    point = (1, 2, 3)
    changed = x.clone()
    changed[:, point[0], point[1], point[2]] += 1.0
    lines = [torch.zeros(4, 5, 6, dtype=torch.bool) for _ in range(3)]
    lines[0][:, point[1], point[2]] = True
    lines[1][point[0], :, point[2]] = True
    lines[2][point[0], point[1], :] = True
    for axis in (1, 2, 3):
        attention = AxialAttention(8, 2, axes=(axis,))
        with torch.no_grad():
            out = attention(x)
            moved = (attention(changed) - out).abs().amax(dim=(0, 4)) > 0
        assert out.shape == x.shape
        assert torch.equal(moved, lines[axis - 1]), f"axis {axis}"
    attention = AxialAttention(8, 2)
    with torch.no_grad():
        moved = (attention(changed) - attention(x)).abs().amax(dim=(0, 4)) > 0
    assert torch.equal(moved, lines[0] | lines[1] | lines[2])


def test_videogpt_positions_are_shared_and_cover_max_frames():
    model = videogpt()
    assert model.positions.time.shape == (4, 16) and model.positions.height.shape == (4, 16)
    shared = [name for name, _ in model.named_parameters() if "position" in name]
    assert shared == ["positions.time", "positions.height", "positions.width"]
    assert videogpt(attention=False).positions is None


# Losses, gradients, checkpoints -------------------------------------------------------------------------------------
def test_normalized_mse():
    frames = random_frames(2, 4)
    target = frames_to_float(frames)
    variance = data_variance(frames)
    assert variance == pytest.approx(float(target.double().var()))
    mean = torch.full_like(target, float(target.mean()))
    assert float(normalized_mse(mean, target, variance)) == pytest.approx(1.0, rel=1e-3)
    assert float(normalized_mse(target, target, variance)) == 0.0


@pytest.mark.parametrize(
    "make", [lambda: videogpt("vq").train(), lambda: causal(2, "lfq").train()], ids=["videogpt", "causal"]
)
def test_gradients_reach_encoder_and_decoder(make):
    model = make()
    video = torch.rand(2, 3, model.num_frames(2), 16, 16) * 2 - 1
    out = model(video)
    assert out.reconstruction.shape == video.shape
    ((out.reconstruction - video).square().mean() + out.quantizer.loss).backward()
    first_encoder_weight = next(p for name, p in model.named_parameters() if name.startswith("encoder"))
    assert first_encoder_weight.grad is not None and first_encoder_weight.grad.abs().sum() > 0
    assert model.last_decoder_weight.grad is not None and model.last_decoder_weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make", [lambda: videogpt("vq"), lambda: causal(2, "lfq"), lambda: causal(1)], ids=["videogpt", "causal", "fsq"]
)
def test_save_load_round_trip(make, tmp_path):
    model = make()
    frames = random_frames(2, model.num_frames(3) if model.kind == "causal" else 8)
    model.save(tmp_path)
    loaded = load_tokenizer(tmp_path, frame_shape=model.frame_shape)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.equal(loaded.encode(frames), model.encode(frames))
    assert torch.equal(loaded.decode(model.encode(frames)), model.decode(model.encode(frames)))


@pytest.mark.parametrize("preset", ["videogpt_dmc", "causal_cpu"])
def test_presets_build(preset):
    config = load_yaml(CONFIGS / f"{preset}.yaml")
    quantizer(config["model"]["quantizer"]["type"])  # skips while that quantizer does not exist
    model = build_tokenizer(config["model"]).eval()
    assert model.frame_shape == (64, 64, 3)
    assert config["train"]["clip_length"] <= getattr(model.config, "max_frames", 10**6)
    model.num_code_frames(config["train"]["clip_length"])
    assert config["loss"]["reconstruction"] == ("normalized_mse" if preset == "videogpt_dmc" else "l1")
    if preset == "causal_cpu":
        codes = model.encode(random_frames(1, config["train"]["clip_length"], size=64))
        assert codes.shape == (1, config["train"]["clip_length"], 8, 8)
    else:
        assert (model.num_code_frames(16), *model.latent_shape) == (8, 16, 16)


def test_causal_tokenizer_learns_dmc_frames(dmc_video, fit):
    """A tiny causal tokenizer's L1 reconstruction error falls when trained for 40 steps on a few DMC frames."""
    video = dmc_video(8, size=32)
    model = causal(1, "lfq", frame_size=32).train()
    errors = fit(model, video, steps=40)
    assert np.mean(errors[-5:]) < 0.5 * np.mean(errors[:5]), errors
