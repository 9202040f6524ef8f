"""DreamerV3 speed on this machine: gradient updates/s, acting calls/s and env steps/s at a fixed train ratio.

For the CPU preset (``configs/agents/dreamerv3_cpu.yaml``) and the Table E.3
DMC preset (``dreamerv3.yaml``), each in fp32 and with bf16 autocast, with and
without Plan2Explore (``behavior.disagreement_weight=1``):

- **updates/s**: :meth:`DreamerV3.update` (world model, ensemble, actor,
  critic) on batches drawn from a replay of random 64x64 frames (speed does not
  depend on their content), after one warm-up update;
- **act calls/s**: one env's observation through encoder, RSSM and actor;
- **env steps/s at train ratio R**: what a training run reaches, from the
  measured rates and the real env's: each env step costs one act call, one
  env step (``worldrl/dmc-cartpole_balance-v0``, rendering 64x64) and
  ``R / (batch_size * batch_length)`` updates. R is the preset's (DMC 512,
  CPU 64), the ratio ``worldrl train-agent`` logs as ``perf/train_ratio``.

One torch thread (2 threads on this shared 2-core machine were slower). The
DMC preset's update takes tens of seconds on this CPU, so its rates come from
few calls; ``--quick`` times the CPU preset only. Results go to
``benchmarks/results/dreamerv3_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from common import machine
from drq_speed import measure_env, random_replay
from tokenizer_speed import rate

from worldrl.agents import build_agent
from worldrl.config import load_yaml
from worldrl.device import resolve_device
from worldrl.pipeline.stages import merge

ROOT = Path(__file__).resolve().parent.parent
FRAME = (64, 64, 3)
PRESETS = {"cpu": "configs/agents/dreamerv3_cpu.yaml", "dmc": "configs/agents/dreamerv3.yaml"}


def measure(preset: str, bf16: bool, plan2explore: bool, replay, seconds: float, device: torch.device) -> dict:
    file = load_yaml(ROOT / PRESETS[preset])
    agent_config = merge(file["agent"], {"bf16": bf16, "device": str(device),
                                         "behavior": {"disagreement_weight": 1.0 if plan2explore else 0.0}})
    agent_config.pop("type")
    torch.manual_seed(0)
    agent = build_agent("dreamerv3", agent_config, FRAME, 1, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    obs = {"image": np.zeros((1, *FRAME), np.uint8), "is_first": np.ones(1, bool)}
    state = agent.act(obs, None, True)[1]
    step_obs = {**obs, "is_first": np.zeros(1, bool)}

    def update() -> None:
        agent.update(replay)
        sync()

    started = time.perf_counter()
    updates_per_s = rate(update, seconds)
    return {"preset": preset, "precision": "bf16" if bf16 else "fp32", "plan2explore": plan2explore,
            "batch": [agent.config.batch_size, agent.config.batch_length],
            "replayed_steps_per_update": agent.replayed_steps_per_update,
            "train_ratio": file["train"]["train_ratio"], "updates_per_s": updates_per_s,
            "act_calls_per_s": rate(lambda: agent.act(step_obs, state, True), min(seconds, 3.0)),
            "seconds": round(time.perf_counter() - started, 1)}


def env_steps_per_s(row: dict, env_rate: float) -> float:
    """Env steps/s of a run at the row's train ratio: act + env step + the owed fraction of an update per step."""
    updates_per_step = row["train_ratio"] / row["replayed_steps_per_update"]
    return 1.0 / (updates_per_step / row["updates_per_s"] + 1.0 / row["act_calls_per_s"] + 1.0 / env_rate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the CPU preset only, short timing")
    parser.add_argument("--presets", nargs="+", choices=sorted(PRESETS), help="default: cpu dmc (quick: cpu)")
    parser.add_argument("--seconds", type=float, help="timing per measurement (default 20; quick 2)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="default results/dreamerv3_speed.json (quick: results/quick/)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    seconds = args.seconds or (2.0 if args.quick else 20.0)
    presets = args.presets or (["cpu"] if args.quick else ["cpu", "dmc"])
    results = Path(__file__).parent / "results"
    out = args.out or (results / "quick" if args.quick else results) / "dreamerv3_speed.json"
    replay = random_replay(2000, 1)
    env = measure_env(min(seconds, 5.0))
    rows = []
    for preset in presets:
        for plan2explore in (False, True):
            for bf16 in (False, True):
                row = measure(preset, bf16, plan2explore, replay, seconds, device)
                row["env_steps_per_s_at_train_ratio"] = env_steps_per_s(row, env["agent_steps_per_s"])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    for row in rows:
        base = next(r for r in rows if r["preset"] == row["preset"] and r["plan2explore"] == row["plan2explore"]
                    and r["precision"] == "fp32")
        row["bf16_speedup"] = row["updates_per_s"] / base["updates_per_s"]
    result = {"command": " ".join(["python", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M:%S"),
              "machine": machine(), "device": str(device), "quick": args.quick, "env": env, "agents": rows,
              "note": "env steps/s at the train ratio are derived from the measured rates (see the docstring); "
                      "the shared 2-core machine makes seconds noisy, ratios within this run less so."}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'preset':6} {'prec':5} {'p2e':5} {'upd/s':>8} {'bf16 x':>6} {'act/s':>7} {'env st/s @R':>11}")
    for row in rows:
        print(f"{row['preset']:6} {row['precision']:5} {str(row['plan2explore']):5} {row['updates_per_s']:8.3f} "
              f"{row['bf16_speedup']:6.2f} {row['act_calls_per_s']:7.1f} {row['env_steps_per_s_at_train_ratio']:11.2f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
