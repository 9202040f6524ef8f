import subprocess
import sys

import pytest

from worldrl.cli import build_parser, main
from worldrl.commands import COMMANDS


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "envs" in out and "demo" in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert "usage: worldrl " + command in capsys.readouterr().out


def test_envs_lists_spaces(capsys):
    assert main(["envs", "cartpole_balance"]) == 0
    out = capsys.readouterr().out
    assert "worldrl/dmc-cartpole_balance-v0" in out and "Box(0..255, (64, 64, 3), uint8)" in out
    assert "Box(-1..1, (1,), float32)" in out


def test_envs_ids_only_and_no_match(capsys):
    assert main(["envs", "--suite", "atari", "--ids-only"]) == 0
    assert "worldrl/atari-ms_pacman-v0" in capsys.readouterr().out.split()
    assert main(["envs", "no_such_env"]) == 1


def test_console_script_runs():
    result = subprocess.run(
        [sys.executable, "-m", "worldrl.cli", "envs", "--ids-only", "--suite", "manip"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "worldrl/manip-reach_site-v0" in result.stdout


def test_collect_scripted_oracle_records_pixels_and_state(tmp_path, capsys):
    out = tmp_path / "pong"
    args = ["collect", "--env", "worldrl/atari-pong-v0", "--policy", "scripted:pong", "--episodes", "1",
            "--out", str(out), "--env-arg", "max_episode_steps=40", "--seed", "3"]
    assert main(args) == 0
    assert "1 episodes in all" in capsys.readouterr().out
    from worldrl.data import EpisodeFolder

    folder = EpisodeFolder(out)
    episode = folder[0]
    assert episode["image"].shape[1:] == (64, 64, 3) and episode["state"].shape[1:] == (128,)
    assert main(args) == 0
    assert len(EpisodeFolder(out)) == 2


def test_collect_rejects_malformed_env_arg(tmp_path):
    with pytest.raises(SystemExit, match="key=value"):
        main(["collect", "--env", "worldrl/atari-pong-v0", "--episodes", "1", "--out", str(tmp_path),
              "--env-arg", "size"])
