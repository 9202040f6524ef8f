"""Policies trained only inside learned simulators, evaluated in the real env, against one trained in the real env.

DrQ runs (``configs/agents/drq_cpu.yaml``, one update per env step) of the
same number of env steps, through :func:`worldrl.training.agent.train_agent`:

``sim_<name>``
    inside ``worldrl/sim-v0`` with the simulator ``--sim name=FOLDER``,
    starting from real frames of cartpole_balance episodes
    (``--start-frames``), imagined episodes of ``--horizon`` steps, reward
    from the model's reward head. By default ``videogpt``: the
    action-conditioned VideoGPT with reward and continue heads that
    ``benchmarks/simulator.py`` trains on SAC expert episodes; and
    ``dreamerv3``: the world model of ``benchmarks/dreamerv3_learning.py``'s
    cartpole run (trained on the agent's own replay), when those exist;
``real``
    in ``worldrl/dmc-cartpole_balance-v0`` (64x64, action repeat 2, the frames
    the simulators were trained on).

Every policy then plays ``--eval-episodes`` full episodes of the real env
with the same seeds (deterministic actions); the figure is each sim-trained
policy's mean task return as a fraction of the real-trained one's, beside a
random policy's. A simulator is only as good as its brief training: the JSON
names each model, and the open-loop fidelity of the VideoGPT one is in
``benchmarks/results/simulator.json``.

Writes ``benchmarks/results/simulator_policy.json`` (``--quick``:
``benchmarks/results/quick/``). Runs resume when interrupted; ``--only NAME``
trains one run (``real`` or a simulator's name), the others are read back
when finished.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import machine
from learning import fill_defaults, train_run

from worldrl.config import load_yaml
from worldrl.pipeline.stages import merge

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REAL = "worldrl/dmc-cartpole_balance-v0"
SIMULATORS = {"videogpt": ROOT / "runs/bench_simulator/default/videogpt_actions/video_model",
              "dreamerv3": ROOT / "runs/bench_dreamerv3_learning/default/cartpole_25000steps_seed0"}
START_FRAMES = ROOT / "runs/bench_data/cartpole_balance/sac_10000/episodes"
EVAL_SEED = 20_000


def run_config(args: argparse.Namespace, model: Path | None) -> dict[str, Any]:
    """The train-agent config inside the simulator ``model`` (None: in the real env)."""
    if model is not None:
        env = {"id": "worldrl/sim-v0", "kwargs": {"model": str(model), "start_frames": str(args.start_frames),
                                                  "horizon": args.horizon, "reward": "head", "device": "cpu"}}
    else:
        env = {"id": REAL, "kwargs": {"size": 64}}
    return merge({**load_yaml(args.preset), "env": env}, {
        "train": {"steps": args.steps, "seed": args.seed, "random_steps": min(args.random_steps, args.steps),
                  "update_ratio": 1.0, "replay_capacity": args.steps, "log_every": max(args.steps // 20, 1),
                  "eval_every": args.steps, "eval_episodes": 0, "checkpoint_every": max(args.steps // 4, 1),
                  "video_every": 0},
    })


def real_returns(run: Path, episodes: int, device: str) -> dict[str, Any]:
    """Task returns of the run's agent in the real env, episode ``i`` reset with seed ``EVAL_SEED + i``.

    Kept in ``<run>/real_env_return.json`` (for the same episodes and seeds), so reading a finished run back
    does not play them again.
    """
    import gymnasium as gym

    from worldrl.training.agent import evaluate_agent, load_agent

    cache = run / "real_env_return.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached["episodes"] == episodes and cached["seed"] == EVAL_SEED:
            return cached["result"]
    agent, _ = load_agent(run, device)
    env = gym.make(REAL, size=64)
    returns = [evaluate_agent(agent, env, 1, EVAL_SEED + i)["task_return"] for i in range(episodes)]
    env.close()
    result = {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "returns": returns}
    cache.write_text(json.dumps({"episodes": episodes, "seed": EVAL_SEED, "result": result}) + "\n")
    return result


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few hundred steps: a smoke test")
    parser.add_argument("--steps", type=int, help="env steps of each run (default 5000)")
    parser.add_argument("--random-steps", type=int, help="random-action steps first (default 1000)")
    parser.add_argument("--horizon", type=int, default=250, help="imagined episode length (default 250)")
    parser.add_argument("--eval-episodes", type=int, help="real-env episodes per policy (default 10)")
    parser.add_argument("--only", help="train only this run: real or a simulator's name")
    parser.add_argument("--sim", action="append", metavar="NAME=FOLDER",
                        help="a simulator (video model folder or DreamerV3 run); repeatable (default: videogpt and "
                             "dreamerv3 of the other benchmarks, those that exist)")
    parser.add_argument("--start-frames", type=Path, default=START_FRAMES)
    parser.add_argument("--preset", default=str(ROOT / "configs/agents/drq_cpu.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_simulator_policy")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/simulator_policy.json or results/quick/)")
    return fill_defaults(parser.parse_args(), {"steps": 300, "random_steps": 100, "eval_episodes": 1},
                         {"steps": 5000, "random_steps": 1000, "eval_episodes": 10})


def simulators(args: argparse.Namespace) -> dict[str, Path]:
    """The simulators to train in: ``--sim`` entries, else the default ones that exist."""
    if not args.sim:
        return {name: path for name, path in SIMULATORS.items() if path.exists()}
    pairs = [entry.split("=", 1) for entry in args.sim]
    if any(len(pair) != 2 for pair in pairs):
        sys.exit(f"--sim takes NAME=FOLDER, got {args.sim}")
    return {name: Path(path) for name, path in pairs}


def missing_inputs(args: argparse.Namespace, sims: dict[str, Path]) -> str | None:
    """Why no simulator or start frames are there (None: all are)."""
    if not sims:
        return ("no simulator: run `python benchmarks/simulator.py` (VideoGPT) or `python benchmarks/"
                "dreamerv3_learning.py --only cartpole` (DreamerV3) first, or pass --sim NAME=FOLDER")
    for path in [*sims.values(), args.start_frames]:
        if not path.exists():
            return f"{path} does not exist"
    return None


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "default"
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "simulator_policy.json"
    sims = simulators(args)
    missing = missing_inputs(args, sims)
    if missing:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine(),
                                   "not_run": missing}, indent=1) + "\n")
        print(f"not run: {missing}", file=sys.stderr)
        return 0 if args.quick else 1
    runs: dict[str, Any] = {}
    models: dict[str, Path | None] = {"real": None, **{f"sim_{name}": path for name, path in sims.items()}}
    for name, model in models.items():
        path = args.runs / mode / f"{name}_{args.steps}steps_seed{args.seed}"
        if args.only not in (None, name, name.removeprefix("sim_")) and not (path / "timing.json").exists():
            continue
        print(f"== {name}: {path}", flush=True)
        config = run_config(args, model)
        trained = train_run(config, path, 2, args.device)
        runs[name] = {"run": str(path), "simulator": None if model is None else str(model), "config": config,
                      "wall_s": trained["wall_s"], "real_env_return": real_returns(path, args.eval_episodes,
                                                                                   args.device)}
    from worldrl.oracles import evaluate_policy_return

    rand = evaluate_policy_return(REAL, "random", args.eval_episodes, EVAL_SEED, {"obs_type": "state"})
    real = runs.get("real", {}).get("real_env_return", {}).get("mean")
    ratios = {name: run["real_env_return"]["mean"] / real for name, run in runs.items()
              if name != "real" and real}
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "mode": mode, "env_steps": args.steps, "horizon": args.horizon,
              "start_frames": str(args.start_frames), "sim_over_real_return": ratios,
              "random_return": {"mean": rand["mean"], "std": rand["std"]},
              "runs_not_finished": [name for name in models if name not in runs],
              "note": "Every policy is evaluated in the real env with the same seeds; one torch thread per run; "
                      "wall seconds from a shared 2-core machine.",
              "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, run in runs.items():
        ret = run["real_env_return"]
        ratio = f", {ratios[name]:.2f} of real" if name in ratios else ""
        print(f"{name:14} real-env return {ret['mean']:7.1f} +- {ret['std']:5.1f}{ratio}  ({run['wall_s']:.0f} s)")
    print(f"random {rand['mean']:.1f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
