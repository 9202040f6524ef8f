"""VQ, FSQ and LFQ quantizers: the shared interface, then each one's own properties."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from worldrl.models.quantizers import QuantizerConfig, build_quantizer
from worldrl.models.quantizers.lfq import LFQ
from worldrl.models.quantizers.vq import VectorQuantizer

CONFIGS = {
    "vq_ema": QuantizerConfig(type="vq", codebook_size=64, dim=8),
    "vq_grad": QuantizerConfig(type="vq", codebook_size=64, dim=8, ema_decay=None),
    "vq_l2": QuantizerConfig(type="vq", codebook_size=64, dim=8, l2_normalize=True),
    "fsq": QuantizerConfig(type="fsq", levels=(3, 4, 5)),
    "lfq": QuantizerConfig(type="lfq", codebook_size=256),
}
SHAPES = [(2, 4, 4), (2, 3, 4, 4)]  # [B, *S] of frame ([B, D, H, W]) and video ([B, D, T, H, W]) features


@pytest.fixture(autouse=True)
def single_thread():
    """These ops are tiny: extra threads only slow them down, badly so on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(name: str):
    torch.manual_seed(0)
    return build_quantizer(CONFIGS[name])


def features(name: str, shape: tuple[int, ...], seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(shape[0], CONFIGS[name].channels, *shape[1:])


# --- the shared interface ---


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", CONFIGS)
def test_shapes_range_and_round_trip(name, shape):
    quantizer = make(name)
    quantizer.train()
    quantizer(features(name, shape, seed=2))  # a training step first (VQ: init from data, EMA, restarts)
    quantizer.eval()
    z = features(name, shape)
    out = quantizer(z)
    assert out.quantized.shape == z.shape and out.quantized.dtype == z.dtype
    assert out.indices.shape == shape and out.indices.dtype == torch.int64
    assert 0 <= int(out.indices.min()) and int(out.indices.max()) < quantizer.codebook_size
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert {"perplexity", "batch_usage"} <= out.stats.keys()
    torch.testing.assert_close(quantizer.indices_to_codes(out.indices), out.quantized)


@pytest.mark.parametrize("name", CONFIGS)
def test_straight_through_gradient(name):
    quantizer = make(name).train()
    z = features(name, SHAPES[1]).requires_grad_()
    out = quantizer(z)
    upstream = torch.randn_like(out.quantized)
    (out.quantized * upstream).sum().backward()
    assert z.grad.abs().sum() > 0
    if name in ("vq_ema", "vq_grad"):
        torch.testing.assert_close(z.grad, upstream)


@pytest.mark.parametrize("name", ["vq_ema", "vq_grad", "vq_l2", "lfq"])
def test_auxiliary_loss_reaches_input(name):
    quantizer = make(name).train()
    z = features(name, SHAPES[0]).requires_grad_()
    quantizer(z).loss.backward()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", CONFIGS)
def test_autocast_runs_in_fp32(name):
    quantizer = make(name).eval()
    z = features(name, SHAPES[1])
    reference = quantizer(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = quantizer(z)
        out_bf16 = quantizer(z.bfloat16())
    assert out.quantized.dtype == torch.float32
    assert torch.equal(out.indices, reference.indices)
    assert out_bf16.quantized.dtype == torch.bfloat16
    assert torch.equal(out_bf16.indices, quantizer(z.bfloat16().float()).indices)


@pytest.mark.parametrize("name", CONFIGS)
def test_wrong_channels_raise(name):
    quantizer = make(name)
    z = torch.randn(2, CONFIGS[name].channels + 1, 4, 4)
    with pytest.raises(ValueError, match=re_shape(z.shape)):
        quantizer(z)


def re_shape(shape: torch.Size) -> str:
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


@pytest.mark.parametrize("name", CONFIGS)
def test_out_of_range_indices_rejected(name):
    quantizer = make(name)
    size = quantizer.codebook_size
    quantizer.indices_to_codes(torch.tensor([[0, size - 1]]))
    for bad in (size, -1):
        with pytest.raises(ValueError, match="code indices"):
            quantizer.indices_to_codes(torch.tensor([[0, bad]]))
    with pytest.raises(TypeError):
        quantizer.check_indices(torch.tensor([0.0]))


@pytest.mark.parametrize("name", CONFIGS)
def test_state_dict_round_trip(name):
    quantizer = make(name).train()
    for step in range(3):
        quantizer(features(name, SHAPES[0], seed=10 + step) + 0.5)
    fresh = build_quantizer(CONFIGS[name])
    fresh.load_state_dict(quantizer.state_dict())
    z = features(name, SHAPES[1])
    quantizer.eval(), fresh.eval()
    a, b = quantizer(z), fresh(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.quantized, b.quantized) and torch.equal(a.loss, b.loss)
    quantizer.train(), fresh.train()
    torch.manual_seed(3)
    a = quantizer(z)
    torch.manual_seed(3)
    b = fresh(z)  # the next training step (EMA, restarts, annealing) resumes exactly
    assert torch.equal(a.quantized, b.quantized) and torch.equal(a.loss, b.loss)
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


# --- VQ ---


def vq(**overrides) -> VectorQuantizer:
    torch.manual_seed(0)
    return build_quantizer(QuantizerConfig(**{"codebook_size": 64, "dim": 8, **overrides}))


@pytest.mark.parametrize("l2", [False, True])
def test_vq_nearest_neighbour(l2):
    quantizer = vq(l2_normalize=l2, init_from_data=False).eval()
    z = features("vq_ema", (4, 8, 8))
    out = quantizer(z)
    flat = z.movedim(1, -1).reshape(-1, 8)
    if l2:
        flat = F.normalize(flat, dim=1)
    distances = torch.cdist(flat, quantizer.codes())
    chosen = distances.gather(1, out.indices.reshape(-1, 1)).squeeze(1)
    torch.testing.assert_close(chosen, distances.min(1).values, rtol=0, atol=1e-5)
    assert (out.indices.reshape(-1) == distances.argmin(1)).float().mean() > 0.99


def test_vq_l2_output_is_unit_code():
    quantizer = vq(l2_normalize=True).train()
    out = quantizer(3 * features("vq_ema", (2, 4, 4)))
    torch.testing.assert_close(out.quantized.norm(dim=1), torch.ones(2, 4, 4))


def test_vq_ema_moves_codes_toward_assigned_data():
    quantizer = vq(ema_decay=0.9, init_from_data=False, restart_dead_codes=False).train()
    before = quantizer.codebook.clone()
    z = features("vq_ema", (4, 4, 4))
    indices = quantizer(z).indices.reshape(-1)
    flat = z.movedim(1, -1).reshape(-1, 8)
    for code in indices.unique():
        mean = flat[indices == code].mean(0)
        assert (quantizer.codebook[code] - mean).norm() < (before[code] - mean).norm()
    unused = torch.ones(64, dtype=torch.bool)
    unused[indices.unique()] = False
    torch.testing.assert_close(quantizer.codebook[unused], before[unused], rtol=1e-3, atol=1e-4)


def test_vq_codebook_loss_trains_codebook_without_ema():
    quantizer = vq(ema_decay=None, init_from_data=False, restart_dead_codes=False).train()
    quantizer(features("vq_grad", (2, 4, 4))).loss.backward()
    assert quantizer.codebook.grad.abs().sum() > 0
    assert "codebook" in dict(quantizer.named_parameters())


@pytest.mark.parametrize("ema", [0.99, None])
@pytest.mark.parametrize("restart", [True, False])
def test_vq_dead_code_restart(restart, ema):
    quantizer = vq(ema_decay=ema, restart_dead_codes=restart, init_from_data=False).train()

    def batch(seed: int) -> torch.Tensor:  # concentrated far from the random initial codes: most codes die
        return 3 + 0.3 * features("vq_ema", (16, 8, 8), seed=seed)

    for step in range(5):
        out = quantizer(batch(step))
    assert out.stats["dead_codes"] < 0.5 if restart else out.stats["dead_codes"] > 0.5
    quantizer.eval().reset_usage()
    quantizer(batch(100))
    assert quantizer.usage() > 0.9 if restart else quantizer.usage() < 0.3


def test_vq_restart_keeps_graph_valid_without_ema():
    quantizer = vq(ema_decay=None, init_from_data=False).train()
    z = (3 + 0.3 * features("vq_grad", (2, 4, 4))).requires_grad_()
    out = quantizer(z)
    assert out.stats["dead_codes"] > 0.5  # restarts wrote into the codebook after the lookup
    out.loss.backward()
    assert z.grad.abs().sum() > 0


@pytest.mark.parametrize("ema", [0.99, None])
@pytest.mark.parametrize("batch", [2, 16])
def test_vq_init_from_data(batch, ema):
    quantizer = vq(ema_decay=ema, restart_dead_codes=False).train()
    assert not quantizer.initialized
    z = 5 + features("vq_ema", (batch, 2, 2))  # 8 or 64 vectors for 64 codes
    quantizer(z)
    assert quantizer.initialized
    flat = z.movedim(1, -1).reshape(-1, 8)
    assert torch.cdist(quantizer.codebook, flat).min(1).values.max() < 0.05
    assert quantizer.codebook.unique(dim=0).shape[0] == 64  # noise separates codes drawn twice


def test_vq_loaded_codebook_is_not_initialised_again():
    quantizer = vq(ema_decay=None, restart_dead_codes=False).train()
    quantizer(5 + features("vq_grad", (4, 2, 2)))
    fresh = vq(ema_decay=None, restart_dead_codes=False).train()
    fresh.load_state_dict(quantizer.state_dict())
    fresh(features("vq_grad", (4, 2, 2), seed=5) - 5)  # without EMA or restarts only an init could move codes
    assert torch.equal(fresh.codebook, quantizer.codebook)


def test_vq_from_config():
    config = QuantizerConfig(codebook_size=32, dim=4, beta=0.5, ema_decay=None, l2_normalize=True)
    quantizer = build_quantizer(config)
    assert isinstance(quantizer, VectorQuantizer)
    assert (quantizer.codebook_size, quantizer.dim, quantizer.beta) == (32, 4, 0.5)
    assert quantizer.ema_decay is None and quantizer.l2_normalize


def _ddp_worker(rank: int, world: int, path: str, results: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=world)
    torch.manual_seed(rank)  # different RNG and data on each replica
    quantizer = VectorQuantizer(64, 8).train()  # initial codebooks differ: init_from_data broadcasts rank 0's
    dead = []
    for _ in range(4):
        dead.append(float(quantizer(3 + 0.3 * torch.randn(4, 8, 4, 4) * (rank + 1)).stats["dead_codes"]))
    states = [None] * world
    dist.all_gather_object(states, {k: v for k, v in quantizer.state_dict().items() if not k.startswith("recent")})
    if rank == 0:
        results["same"] = all(torch.equal(states[0][k], s[k]) for s in states for k in states[0])
        results["restarted"] = max(dead) > 0
    dist.destroy_process_group()


def test_vq_replicas_stay_identical_under_ddp(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed unavailable")
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), results), nprocs=2)
        assert results["same"] and results["restarted"]


# --- LFQ ---


def lfq(**overrides) -> LFQ:
    return build_quantizer(QuantizerConfig(**{"type": "lfq", "codebook_size": 256, **overrides}))


def test_lfq_index_and_codes():
    quantizer = lfq()
    z = features("lfq", (3, 5, 5))
    out = quantizer(z)
    bits = (z > 0).long()
    expected = sum(bits[:, i] * 2**i for i in range(8))
    assert torch.equal(out.indices, expected)
    torch.testing.assert_close(out.quantized, torch.where(z > 0, 1.0, -1.0))
    assert quantizer(torch.zeros(1, 8, 1, 1)).indices.item() == 0  # sign(0) = -1
    codes = quantizer.indices_to_codes(torch.arange(256).view(1, 256))
    assert codes.unique(dim=2).shape[2] == 256 and set(codes.unique().tolist()) == {-1.0, 1.0}


def test_lfq_entropy_penalty_prefers_spread_codes():
    quantizer = lfq()
    codes = quantizer.indices_to_codes(torch.arange(256).repeat(4).view(4, 256, 1)) * 3
    spread = quantizer.entropy_terms(codes)
    collapsed = quantizer.entropy_terms(codes[:, :, :1].expand_as(codes).contiguous())
    assert spread[1] > math.log(256) - 0.1 and collapsed[1] < 0.1
    assert spread[0] - spread[1] < collapsed[0] - collapsed[1] - 5


def test_lfq_exact_codebook_entropy_matches_full_distribution():
    torch.manual_seed(0)
    quantizer = LFQ(2**6, inv_temperature=0.5)
    z = torch.randn(50, 6)
    codes = quantizer.indices_to_codes(torch.arange(64))  # [64, 6]
    q = torch.softmax(-0.5 * torch.cdist(z, codes).square(), dim=1)
    per_sample = -(q * q.log()).sum(1).mean()
    mean = q.mean(0)
    codebook = -(mean * mean.log()).sum()
    got = quantizer.entropy_terms(z.view(50, 6, 1))
    torch.testing.assert_close(got[0], per_sample)
    torch.testing.assert_close(got[1], codebook)
    grouped = LFQ(2**6, inv_temperature=0.5, max_exact_bits=3)  # two groups: an upper bound of the joint entropy
    assert grouped.groups == [(0, 3), (3, 6)]
    assert grouped.entropy_terms(z.view(50, 6, 1))[1] >= codebook - 1e-5


def test_lfq_entropy_weight_annealing():
    quantizer = lfq().train()
    z = features("lfq", (1, 2, 2))
    for step, weight in [(0, 0.3), (1000, 0.2), (2000, 0.1), (5000, 0.1)]:
        quantizer.step.fill_(step)
        out = quantizer(z)
        assert out.stats["entropy_weight"].item() == pytest.approx(weight)
        assert int(quantizer.step) == step + 1
    quantizer.eval()
    quantizer(z)
    assert int(quantizer.step) == 5001
    assert "step" in quantizer.state_dict()


def test_lfq_entropy_penalty_increases_code_usage():
    def usage_after_training(entropy_weight: float) -> float:
        torch.manual_seed(0)
        encoder = torch.nn.Linear(16, 8)
        with torch.no_grad():  # nearly identical rows: correlated bits, few codes used at the start
            encoder.weight.copy_(encoder.weight[:1].expand(8, 16) + 0.02 * torch.randn(8, 16))
        quantizer = lfq(entropy_weight=entropy_weight, entropy_weight_start=entropy_weight).train()
        optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-2)
        x = torch.randn(512, 16)
        for _ in range(60):
            loss = quantizer(encoder(x).view(512, 8, 1)).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        quantizer.eval().reset_usage()
        quantizer(encoder(x).view(512, 8, 1))
        return quantizer.usage()

    without, with_penalty = usage_after_training(0.0), usage_after_training(0.1)
    assert without < 0.4 and with_penalty > 0.7  # 512 samples fill at most ~86% of 256 codes


# --- FSQ ---


def test_fsq_reaches_every_code():
    quantizer = make("fsq")
    grid = torch.linspace(-4, 4, 41)
    z = torch.cartesian_prod(grid, grid, grid).t().reshape(1, 3, -1)
    assert quantizer(z).indices.unique().numel() == math.prod((3, 4, 5)) == quantizer.codebook_size


def test_fsq_mixed_radix_round_trip():
    quantizer = make("fsq")
    indices = torch.arange(60).view(1, 60)
    codes = quantizer.indices_to_codes(indices)[0]  # [3, 60]
    levels = torch.tensor([3.0, 4.0, 5.0]).view(3, 1)
    half = (levels - 1) / 2
    digits = torch.round(codes * half + half).long()  # back to 0..L-1 per channel
    assert ((digits >= 0) & (digits < levels)).all()
    assert torch.equal(digits[0] + 3 * digits[1] + 12 * digits[2], indices[0])
