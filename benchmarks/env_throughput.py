"""Steps/s of worldrl's envs against the raw dm_control / ALE loop with the same rendering.

The raw loop is what any pixel agent must pay anyway: the simulator step
(action repeat included) plus one 64x64 frame per agent step (MuJoCo render,
or ALE's max-pooled screen and area resize). worldrl's layer is everything
else: Gymnasium's API and wrappers, argument checks, the info dict, vector
envs. For N envs the sync baseline is N raw loops in one process; the async
baseline is N raw loops in N processes with no communication at all, an upper
bound that Gymnasium's AsyncVectorEnv (pipes and shared memory) cannot reach.

    python benchmarks/env_throughput.py                   # both suites, 1/2/4 envs
    python benchmarks/env_throughput.py --suites dmc --num-envs 1 --steps 100

Prints a table and writes benchmarks/results/env_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
from common import machine

import worldrl  # noqa: F401  (sets MUJOCO_GL before dm_control loads; registers ids)

SUITES = {
    "dmc": {"env_id": "worldrl/dmc-walker_walk-v0", "steps": 200},
    "atari": {"env_id": "worldrl/atari-pong-v0", "steps": 4000},
}


def raw_dmc_loop(steps: int, seed: int) -> float:
    """dm_control walker_walk, action repeat 2, one 64x64 render per agent step; returns steps/s."""
    from dm_control import suite

    env = suite.load("walker", "walk", task_kwargs={"random": seed})
    spec = env.action_spec()
    actions = np.random.default_rng(seed).uniform(spec.minimum, spec.maximum, (steps, *spec.shape))
    env.reset()
    env.physics.render(64, 64, camera_id=0)
    start = time.perf_counter()
    for action in actions:
        for _ in range(2):
            time_step = env.step(action)
        env.physics.render(64, 64, camera_id=0)
        if time_step.last():
            env.reset()
    return steps / (time.perf_counter() - start)


def raw_atari_loop(steps: int, seed: int) -> float:
    """ALE pong, sticky actions, frame skip 4, max of the last two frames, 64x64 area resize; steps/s."""
    import ale_py
    import cv2
    from ale_py import roms

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
    ale = ale_py.ALEInterface()
    ale.setInt("random_seed", seed)
    ale.setFloat("repeat_action_probability", 0.25)
    ale.loadROM(roms.get_rom_path("pong"))
    legal = ale.getMinimalActionSet()
    actions = [legal[i] for i in np.random.default_rng(seed).integers(len(legal), size=steps)]
    first, second = np.zeros((210, 160, 3), np.uint8), np.zeros((210, 160, 3), np.uint8)
    start = time.perf_counter()
    for action in actions:
        for frame in range(4):
            ale.act(action)
            if frame == 2:
                ale.getScreenRGB(first)
            elif frame == 3:
                ale.getScreenRGB(second)
        cv2.resize(np.maximum(first, second, out=first), (64, 64), interpolation=cv2.INTER_AREA)
        if ale.game_over():
            ale.reset_game()
    return steps / (time.perf_counter() - start)


RAW_LOOPS = {"dmc": raw_dmc_loop, "atari": raw_atari_loop}


def _raw_worker(args: tuple[str, int, int]) -> float:
    suite, steps, seed = args
    return RAW_LOOPS[suite](steps, seed)


def _call_into(queue, fn, args) -> None:
    queue.put(fn(*args))


def _fresh(fn, *args):
    """Run ``fn(*args)`` in a new (non-daemonic, so it may start async envs) process.

    Measurements in one long-lived process drift: a raw ALE loop ran 10% slower
    after other envs had been made and closed in the same process.
    """
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_call_into, args=(queue, fn, args))
    process.start()
    result = queue.get()
    process.join()
    return result


def raw_throughput(suite: str, num_envs: int, steps: int, parallel: bool) -> float:
    """Total steps/s of ``num_envs`` raw loops, one after another or in separate processes."""
    jobs = [(suite, steps, seed) for seed in range(num_envs)]
    if not parallel:
        return num_envs * steps / sum(steps / _fresh(_raw_worker, job) for job in jobs)
    with mp.get_context("spawn").Pool(num_envs) as pool:
        rates = pool.map(_raw_worker, jobs)
    # Each process timed its own loop; with no communication they overlap fully.
    return sum(rates)


def worldrl_throughput(suite: str, num_envs: int, steps: int, mode: str) -> float:
    return _fresh(_worldrl_worker, suite, num_envs, steps, mode)


def _worldrl_worker(suite: str, num_envs: int, steps: int, mode: str) -> float:
    """Total steps/s of ``gym.make_vec`` (or ``gym.make`` for one env in sync mode)."""
    import gymnasium as gym

    env_id = SUITES[suite]["env_id"]
    if num_envs == 1 and mode == "sync":
        env = gym.make(env_id)
        env.action_space.seed(0)
        actions = [env.action_space.sample() for _ in range(steps)]
        env.reset(seed=0)
        start = time.perf_counter()
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        rate = steps / (time.perf_counter() - start)
        env.close()
        return rate
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode)
    envs.action_space.seed(0)
    actions = [envs.action_space.sample() for _ in range(steps)]
    envs.reset(seed=0)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)  # autoreset is part of the vector env's own step
    rate = num_envs * steps / (time.perf_counter() - start)
    envs.close()
    return rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", choices=sorted(SUITES), default=sorted(SUITES))
    parser.add_argument("--num-envs", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--modes", nargs="+", choices=["sync", "async"], default=["sync", "async"])
    parser.add_argument("--steps", type=int, help="agent steps per env (default: 200 for DMC, 4000 for Atari)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="best of this many runs, alternating raw and worldrl, each in a fresh process")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "env_throughput.json"))
    args = parser.parse_args(argv)

    rows = []
    print(f"{'suite':<6} {'mode':<6} {'envs':>4} {'raw steps/s':>12} {'worldrl steps/s':>16} {'overhead':>9}")
    for suite in args.suites:
        steps = args.steps or SUITES[suite]["steps"]
        for mode in args.modes:
            for num_envs in args.num_envs:
                raw, ours = 0.0, 0.0
                for _ in range(args.repeats):
                    raw = max(raw, raw_throughput(suite, num_envs, steps, parallel=mode == "async"))
                    ours = max(ours, worldrl_throughput(suite, num_envs, steps, mode))
                overhead = raw / ours - 1.0
                rows.append({
                    "suite": suite, "env_id": SUITES[suite]["env_id"], "mode": mode, "num_envs": num_envs,
                    "steps_per_env": steps, "raw_steps_per_s": round(raw, 1),
                    "worldrl_steps_per_s": round(ours, 1), "overhead": round(overhead, 4),
                })
                print(f"{suite:<6} {mode:<6} {num_envs:>4} {raw:>12.1f} {ours:>16.1f} {overhead:>8.1%}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        "overhead_definition": "raw steps/s divided by worldrl steps/s, minus 1 (target <= 5%)",
        "results": rows,
    }
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
