"""viper-report on real 32x32 cartpole episodes with a tiny (random-weight) video model; AUROC and Spearman helpers."""

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from worldrl.cli import build_parser, main
from worldrl.data import EpisodeFolder
from worldrl.data.collect import collect
from worldrl.diagnostics.viper_report import (
    auroc,
    average_ranks,
    group_labels,
    spearman,
    spread,
    upsample_nearest,
    viper_report,
)
from worldrl.wrappers import relabel

ENV = "worldrl/dmc-cartpole_balance-v0"
LENGTHS = {"expert": 8, "random": 6, "medium": 7}


def pairwise_auroc(positive, negative) -> float:
    """Brute force: the share of (positive, negative) pairs the positive wins, ties counting half."""
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(positive, negative)]
    return float(np.mean(wins))


def policy(kind: str):
    """Zero force (the 'expert'), full random, or random at a third of the range."""
    rng = np.random.default_rng(len(kind))
    scale = {"expert": 0.0, "random": 1.0, "medium": 0.3}[kind]
    return lambda obs: (scale * rng.uniform(-1, 1, (len(obs), 1))).astype(np.float32)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Three tiny dataset folders of real 32x32 cartpole frames, episodes of different lengths per folder."""
    root = tmp_path_factory.mktemp("report_data")
    for kind, steps in LENGTHS.items():
        collect(ENV, policy(kind), 3, root / kind, seed=len(kind), progress=False,
                env_kwargs={"size": 32, "max_episode_steps": steps})
    return root


@pytest.fixture(scope="module")
def report(viper_model_dir, folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    viper_report(viper_model_dir, folders / "expert", [folders / "random", folders / "medium"], out,
                 device="cpu", heatmaps=3, command="test")
    return json.loads((out / "report.json").read_text()), out


def test_report_scores_every_episode_with_relabel(report, folders, viper_model_dir):
    data, _ = report
    assert data["command"] == "test" and set(data["folders"]) == {"expert", "random", "medium"}
    assert data["episode_counts"]["random"] == {"scored": 3, "in_folder": 3}
    for label in LENGTHS:
        logp = relabel(EpisodeFolder(folders / label), viper_model_dir, device="cpu")
        rows = [e for e in data["episodes"] if e["group"] == label]
        assert [e["length"] for e in rows] == [LENGTHS[label]] * 3
        np.testing.assert_allclose([e["viper_return"] for e in rows], [np.sum(x[1:]) for x in logp], rtol=1e-6)
        np.testing.assert_allclose([e["viper_mean_per_step"] for e in rows],
                                   [np.mean(x[1:]) for x in logp], rtol=1e-6)
        np.testing.assert_allclose(data["groups"][label]["mean_viper_return"],
                                   np.mean([e["viper_return"] for e in rows]), rtol=1e-9)
        curve = data["curves"][label]
        assert len(curve["viper"]["mean"]) == len(curve["task"]["std"]) == LENGTHS[label]
        assert curve["viper"]["count"] == [3] * LENGTHS[label]
        np.testing.assert_allclose(curve["viper"]["mean"][0], np.mean([x[1] for x in logp]), rtol=1e-6)


def test_auroc_and_spearman_match_direct_computations(report):
    data, _ = report
    scipy_stats = pytest.importorskip("scipy.stats")
    episodes = data["episodes"]
    for kind, key in (("return", "viper_return"), ("mean_per_step", "viper_mean_per_step")):
        expert = [e[key] for e in episodes if e["group"] == "expert"]
        for label in ("random", "medium"):
            value = data["auroc"][kind]["groups"][label]
            assert 0 <= value <= 1
            assert value == pytest.approx(pairwise_auroc(expert, [e[key] for e in episodes if e["group"] == label]))
        others = [e[key] for e in episodes if e["group"] != "expert"]
        assert data["auroc"][kind]["all_others"] == pytest.approx(pairwise_auroc(expert, others))
        direct = scipy_stats.spearmanr([e[key] for e in episodes], [e["task_return"] for e in episodes])
        assert data["spearman"][kind] == pytest.approx(direct.statistic)


def test_pngs_heatmaps_and_tensorboard(report):
    data, out = report
    assert data["figures"] == ["reward_curves.png", "returns.png", "heatmaps_random.png", "heatmaps_medium.png"]
    for name in data["figures"]:
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
    heatmap = data["heatmaps"]["random"]
    assert heatmap["steps"] == [1, 4, 6] and heatmap["max_surprise"] > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))


def test_cli_runs_and_reports(viper_model_dir, folders, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["viper-report", "--video-model", str(viper_model_dir), "--expert", str(folders / "expert"),
            "--other", str(folders / "random"), "--out", str(out), "--max-episodes", "2", "--heatmaps", "0",
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "AUROC by return: expert vs random" in printed and "Spearman" in printed
    data = json.loads((out / "report.json").read_text())
    assert data["episode_counts"]["expert"] == {"scored": 2, "in_folder": 3}
    assert data["heatmaps"] == {} and data["command"].startswith("worldrl viper-report --video-model")


def test_cli_help_and_errors(viper_model_dir, folders, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["viper-report", "--help"])
    assert exit_info.value.code == 0 and "--expert" in capsys.readouterr().out
    base = ["viper-report", "--video-model", str(viper_model_dir), "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*base, "--expert", str(folders / "expert"), "--other", str(tmp_path / "missing")]) == 1
    assert f"dataset folder {tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*base, "--expert", str(tmp_path / "empty"), "--other", str(folders / "random")]) == 1
    assert "holds no episodes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_average_ranks_auroc_and_spearman_on_known_values():
    np.testing.assert_array_equal(average_ranks([3, 1, 3, 2]), [3.5, 1, 3.5, 2])
    assert auroc([3, 4], [1, 2]) == 1.0 and auroc([1, 2], [3, 4]) == 0.0
    assert auroc([1], [1]) == 0.5
    assert auroc([1, 2, 3], [2, 2]) == 0.5  # wins 2, ties 2 x 0.5, losses 2 of 6 pairs
    rng = np.random.default_rng(0)
    pos, neg = rng.integers(0, 4, 7), rng.integers(0, 4, 5)  # many ties
    assert auroc(pos, neg) == pytest.approx(pairwise_auroc(pos, neg))
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / np.sqrt(22.5))
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="both groups"):
        auroc([], [1])


def test_spearman_equals_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 5, 20), rng.integers(0, 3, 20)
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic)


def test_helpers_upsample_spread_and_labels():
    grid = np.arange(12.0).reshape(1, 3, 4)
    np.testing.assert_array_equal(upsample_nearest(grid, 6, 8), np.kron(grid, np.ones((2, 2))))
    assert spread(10, 3) == [0, 4, 9] and spread(2, 5) == [0, 1] and spread(4, None) == [0, 1, 2, 3]
    assert group_labels(["a/random", "b/random", "c/expert"]) == ["random", "random-2", "expert-2"]
