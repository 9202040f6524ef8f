"""A policy trained only inside the learned simulator, evaluated in the real env, against one trained in the real env.

Two DrQ runs (``configs/agents/drq_cpu.yaml``, one update per env step) of the
same number of env steps, through :func:`worldrl.training.agent.train_agent`:

``sim``
    inside ``worldrl/sim-v0``: the action-conditioned VideoGPT with reward and
    continue heads that ``benchmarks/simulator.py`` trains on cartpole_balance
    episodes (``--model``), starting from real frames of those episodes
    (``--start-frames``), imagined episodes of ``--horizon`` steps, reward from
    the reward head;
``real``
    in ``worldrl/dmc-cartpole_balance-v0`` (64x64, action repeat 2, the frames
    the simulator was trained on).

Both policies then play ``--eval-episodes`` full episodes of the real env with
the same seeds (deterministic actions); the figure is the sim-trained
policy's mean task return as a fraction of the real-trained one's, beside a
random policy's. The simulator is only as good as its brief training: the
JSON records its training steps and data, and the open-loop fidelity is in
``benchmarks/results/simulator.json``.

Writes ``benchmarks/results/simulator_policy.json`` (``--quick``:
``benchmarks/results/quick/``). Runs resume when interrupted.
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
from learning import train_run

from worldrl.config import load_yaml
from worldrl.pipeline.stages import merge

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
REAL = "worldrl/dmc-cartpole_balance-v0"
MODEL = ROOT / "runs/bench_simulator/default/videogpt_actions/video_model"
START_FRAMES = ROOT / "runs/bench_data/cartpole_balance/sac_10000/episodes"
EVAL_SEED = 20_000


def run_config(args: argparse.Namespace, where: str) -> dict[str, Any]:
    if where == "sim":
        env = {"id": "worldrl/sim-v0", "kwargs": {"model": str(args.model), "start_frames": str(args.start_frames),
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
    """Task returns of the run's agent in the real env, episode ``i`` reset with seed ``EVAL_SEED + i``."""
    import gymnasium as gym

    from worldrl.training.agent import evaluate_agent, load_agent

    agent, _ = load_agent(run, device)
    env = gym.make(REAL, size=64)
    returns = [evaluate_agent(agent, env, 1, EVAL_SEED + i)["task_return"] for i in range(episodes)]
    env.close()
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "returns": returns}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few hundred steps: a smoke test")
    parser.add_argument("--steps", type=int, help="env steps of each run (default 5000)")
    parser.add_argument("--random-steps", type=int, help="random-action steps first (default 1000)")
    parser.add_argument("--horizon", type=int, default=250, help="imagined episode length (default 250)")
    parser.add_argument("--eval-episodes", type=int, help="real-env episodes per policy (default 10)")
    parser.add_argument("--only", choices=("sim", "real"), help="train only this run")
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--start-frames", type=Path, default=START_FRAMES)
    parser.add_argument("--preset", default=str(ROOT / "configs/agents/drq_cpu.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_simulator_policy")
    parser.add_argument("--out", type=Path, help="JSON file (default: results/simulator_policy.json or results/quick/)")
    args = parser.parse_args()
    defaults = {"steps": 300 if args.quick else 5000, "random_steps": 100 if args.quick else 1000,
                "eval_episodes": 1 if args.quick else 10}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def missing_inputs(args: argparse.Namespace) -> str | None:
    """Why the simulator or its start frames are not there (None: both are)."""
    for name in ("model", "start_frames"):
        if not getattr(args, name).exists():
            return (f"{getattr(args, name)} does not exist: run `python benchmarks/simulator.py` first (it trains "
                    f"the simulator on cartpole_balance episodes), or pass --{name.replace('_', '-')}")
    return None


def main() -> int:
    args = parse_args()
    torch.set_num_threads(1)
    mode = "quick" if args.quick else "default"
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS) / "simulator_policy.json"
    missing = missing_inputs(args)
    if missing:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "machine": machine(),
                                   "not_run": missing}, indent=1) + "\n")
        print(f"not run: {missing}", file=sys.stderr)
        return 0 if args.quick else 1
    runs: dict[str, Any] = {}
    for where in ("sim", "real"):
        path = args.runs / mode / f"{where}_{args.steps}steps_seed{args.seed}"
        if args.only not in (None, where) and not (path / "timing.json").exists():
            continue
        print(f"== {where}: {path}", flush=True)
        config = run_config(args, where)
        trained = train_run(config, path, 2, args.device)
        runs[where] = {"run": str(path), "config": config, "wall_s": trained["wall_s"],
                       "real_env_return": real_returns(path, args.eval_episodes, args.device)}
    from worldrl.oracles import evaluate_policy_return

    rand = evaluate_policy_return(REAL, "random", args.eval_episodes, EVAL_SEED, {"obs_type": "state"})
    figure = None
    if len(runs) == 2:
        figure = runs["sim"]["real_env_return"]["mean"] / runs["real"]["real_env_return"]["mean"]
    stage = args.model.parent / "stage.json"
    simulator = json.loads(stage.read_text()) if stage.exists() else None
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "mode": mode, "env_steps": args.steps, "horizon": args.horizon,
              "simulator": {"model": str(args.model), "start_frames": str(args.start_frames), "training": simulator},
              "sim_over_real_return": figure, "random_return": {"mean": rand["mean"], "std": rand["std"]},
              "runs_not_finished": [where for where in ("sim", "real") if where not in runs],
              "note": "Both policies are evaluated in the real env with the same seeds; one torch thread per run; "
                      "wall seconds from a shared 2-core machine.",
              "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for where, run in runs.items():
        ret = run["real_env_return"]
        print(f"{where:5} real-env return {ret['mean']:7.1f} +- {ret['std']:5.1f}  ({run['wall_s']:.0f} s)")
    print(f"random {rand['mean']:.1f}; sim / real: {figure if figure is None else round(figure, 3)}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
