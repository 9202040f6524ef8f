from pathlib import Path

import pytest
import torch

from worldrl.config import load_yaml
from worldrl.models.tokenizers import VQGAN, CheckpointError, build_tokenizer, frames_to_float, load_tokenizer
from worldrl.models.tokenizers.discriminator import DiscriminatorConfig, PatchGAN, adaptive_weight, generator_loss
from worldrl.models.tokenizers.vqgan import VQGANConfig

CONFIGS = Path(__file__).parent.parent / "configs" / "tokenizer"
LATENTS = {"dmc": (8, 8), "atari": (16, 16), "rlbench": (16, 16), "cpu": (8, 8)}


def tiny(quantizer: dict | None = None) -> VQGAN:
    torch.manual_seed(0)
    return VQGAN(VQGANConfig(
        base_channels=16, channel_mult=(1, 2, 2, 2), z_channels=16, norm_groups=8,
        quantizer=quantizer or {"type": "vq", "codebook_size": 64, "dim": 16},
    ))


@pytest.mark.parametrize("preset", sorted(LATENTS))
def test_presets_build_with_table_e1_latents(preset):
    model = build_tokenizer(load_yaml(CONFIGS / f"{preset}.yaml")["model"])
    assert isinstance(model, VQGAN)
    assert model.latent_shape == LATENTS[preset] and model.frame_shape == (64, 64, 3)
    if preset != "cpu":
        assert model.codebook_size == 1024 and model.quantizer.dim == 64


def test_encode_decode_shapes_and_gradients():
    model = tiny()
    frames = torch.randint(0, 256, (2, 3, 64, 64, 3), dtype=torch.uint8)
    codes = model.encode(frames)
    assert codes.shape == (2, 3, 8, 8) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < 64
    decoded = model.decode(codes)
    assert decoded.shape == frames.shape and decoded.dtype == torch.uint8
    out = model(frames_to_float(frames))
    (out.reconstruction.abs().mean() + out.quantizer.loss).backward()
    assert model.encoder.net[0].weight.grad.abs().sum() > 0
    assert model.last_decoder_weight.grad.abs().sum() > 0


def test_bad_inputs_are_named():
    model = tiny()
    with pytest.raises(TypeError, match="uint8"):
        model.encode(torch.zeros(1, 1, 64, 64, 3))
    with pytest.raises(ValueError, match="64, 64, 3"):
        model.encode(torch.zeros(1, 1, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="not divisible"):
        VQGANConfig(frame_size=60)


def test_save_load_round_trip_and_checkpoint_errors(tmp_path):
    model = tiny().eval()
    frames = torch.randint(0, 256, (1, 2, 64, 64, 3), dtype=torch.uint8)
    model.save(tmp_path / "tok")
    loaded = load_tokenizer(tmp_path / "tok")
    assert torch.equal(loaded.encode(frames), model.encode(frames))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match=r"\(64, 64, 3\).*\(96, 96, 3\)"):
        load_tokenizer(tmp_path / "tok", frame_shape=(96, 96, 3))
    weights = tmp_path / "tok" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_tokenizer(tmp_path / "tok")


def test_patchgan_logits_and_adaptive_weight():
    model = tiny()
    disc = PatchGAN(3, DiscriminatorConfig(channels=8, num_layers=2))
    video = frames_to_float(torch.randint(0, 256, (2, 1, 64, 64, 3), dtype=torch.uint8))
    rec = model(video).reconstruction
    logits = disc(rec[:, :, 0])
    assert logits.shape[:2] == (2, 1) and logits.shape[2] > 1
    weight = adaptive_weight((rec - video).abs().mean(), generator_loss(logits), model.last_decoder_weight)
    assert torch.isfinite(weight) and weight > 0 and not weight.requires_grad


def test_reconstruction_error_falls_on_real_dmc_frames(dmc_video, fit):
    errors = fit(tiny(), dmc_video(16), steps=60)
    assert errors[-1] < 0.6 * errors[0], errors[::10]
