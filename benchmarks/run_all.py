"""Run every benchmark script and write ``summary.md``: one table per area, each figure with its target and machine.

    python benchmarks/run_all.py                  # every script at its full budget (hours on 2 CPU cores)
    python benchmarks/run_all.py --quick          # smoke budgets, results in benchmarks/results/quick/
    python benchmarks/run_all.py --summary-only   # rewrite summary.md from the JSON results already there
    python benchmarks/run_all.py --only replay drq_speed

Full runs write each script's JSON into ``benchmarks/results/`` (the figures
the README quotes); ``--quick`` runs write into ``benchmarks/results/quick/``
so that smoke numbers never replace measured ones. The summary reads only the
JSON files, so it can be regenerated at any time; an area whose script does
not exist yet, or whose JSON is missing, is listed as "not run".
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
Row = tuple[str, str, str] | tuple[str, str, str, dict[str, Any], str]
"""(figure, measured, target), plus (machine, date) where a figure was measured elsewhere than the JSON's run (a
learning benchmark's carried runs)."""


def measured_where(run: dict[str, Any]) -> tuple[()] | tuple[dict[str, Any], str]:
    """A carried run's (machine, date) to append to its rows; nothing for a run measured with its JSON."""
    return (run["measured_on"], run.get("carried_from", "")) if run.get("measured_on") else ()


@dataclass(frozen=True)
class Script:
    """A benchmark script, the area its figures belong to, its smoke-test arguments and how to read its JSON."""

    name: str
    area: str
    quick_args: tuple[str, ...]
    rows: Callable[[dict[str, Any]], list[Row]] | None = None


def _f(value: Any, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def env_rows(data: dict) -> list[Row]:
    return [(f"{r['suite']} {r['mode']} x{r['num_envs']}: steps/s (raw {_f(r['raw_steps_per_s'])})",
             f"{_f(r['worldrl_steps_per_s'])}, overhead {r['overhead']:.1%}", "overhead <= 5% (sync)")
            for r in data["results"]]


def replay_rows(data: dict) -> list[Row]:
    rows = []
    for r in data["results"]:
        if "nbytes_ratio" in r:
            rows.append((r["figure"], f"{r['nbytes_ratio']:.3f} (RSS {r['rss_delta_ratio']:.3f})", f"<= {r['target']}"))
        else:
            rows.append((r["figure"], f"{_f(r['worldrl_per_s'])} (raw baseline {_f(r['baseline_per_s'])})", "-"))
    return rows


def tokenizer_speed_rows(data: dict) -> list[Row]:
    return [(f"{r['preset']} {r['precision']}: encode / decode / train frames/s",
             f"{_f(r['encode_frames_per_s'])} / {_f(r['decode_frames_per_s'])} / {_f(r['train_frames_per_s'])}", "-")
            for r in data["results"]]


def tokenizer_quality_rows(data: dict) -> list[Row]:
    psnr = data["targets"]["psnr_db"]["target"]
    rows = [(f"{t['task']}: PSNR / SSIM after {t['steps']} steps", f"{t['psnr_db']:.1f} dB / {t['ssim']:.3f}",
             f">= {psnr} dB") for t in data["tasks"]]
    usage = data["targets"]["vq_usage_with_restarts"]["target"]
    rows += [(f"{u['task']} {u['variant']}: codes in use", f"{u['usage']:.1%}",
              f">= {usage:.0%}" if u["variant"] == "vq_restarts" else "-") for u in data.get("usage", [])]
    return rows


def likelihood_rows(data: dict) -> list[Row]:
    return [(f"batch {r['batch']} {r['precision']}: frames/s naive / batch / stream",
             f"{_f(r['frames_per_s']['naive'])} / {_f(r['frames_per_s']['batch'])} / "
             f"{_f(r['frames_per_s']['stream'])} ({r['frames_per_s']['stream'] / r['frames_per_s']['naive']:.1f}x)",
             data["target"]) for r in data["rows"]]


def video_quality_rows(data: dict) -> list[Row]:
    return [(f"{m['kind']} ({m['steps']} steps): held-out bits per code; log_prob frames/s",
             f"{m['val']['bits_per_code']:.3f}; {_f(m['val']['log_prob_frames_per_s'])}",
             f"< unigram {data['baselines_bits_per_code']['unigram_train_frequencies']:.2f}")
            for m in data["models"]]


def viper_overhead_rows(data: dict) -> list[Row]:
    return [(f"{r['preset']} x{r['num_envs']} {r['precision']}: wrapped / bare env steps/s",
             f"{r['ratio_wrapped_over_unwrapped']:.2f} ({_f(r['env_steps_per_s']['wrapped'])} / "
             f"{_f(r['env_steps_per_s']['unwrapped'])})", ">= 0.5 (DMC presets)" if r["preset"] == "dmc" else "-")
            for r in data["rows"]]


def viper_quality_rows(data: dict) -> list[Row]:
    targets = data["targets"]
    return [row for t in data["tasks"] for row in (
        (f"{t['task']}: AUROC expert vs random", f"{t['auroc_expert_vs_random']:.3f}",
         f">= {targets['auroc_expert_vs_random']}"),
        (f"{t['task']}: Spearman VIPER vs task return", f"{t['spearman_viper_vs_task_return']:.3f}",
         f">= {targets['spearman_viper_vs_task_return']}"))]


def drq_speed_rows(data: dict) -> list[Row]:
    rows = [(f"{a['agent']} {a['precision']}{' +RND' if a['rnd'] else ''} batch {a['batch']}: updates/s; act calls/s",
             f"{_f(a['updates_per_s'])}; {_f(a['act_calls_per_s'], '.0f')}", "-") for a in data["agents"]]
    env = data.get("env")
    if env:
        rows.append((f"{env['env']}: agent steps/s", _f(env["agent_steps_per_s"]), "-"))
    return rows


def dreamerv3_speed_rows(data: dict) -> list[Row]:
    return [(f"dreamerv3 {a['preset']} {a['precision']}{' +P2E' if a['plan2explore'] else ''} batch "
             f"{a['batch'][0]}x{a['batch'][1]}: updates/s; env steps/s at train ratio {a['train_ratio']:g}",
             f"{_f(a['updates_per_s'], '.2f')} (bf16 {a['bf16_speedup']:.2f}x); "
             f"{_f(a['env_steps_per_s_at_train_ratio'], '.2f')}", "-") for a in data["agents"]]


def _curve_text(curve: list[dict], key: str = "frames") -> str:
    return ", ".join(f"{p[key] / 1000:g}k: {p['task_return']:.0f}" for p in curve) or "no evaluation yet"


def drq_learning_rows(data: dict) -> list[Row]:
    rows = []
    randoms = data["reference"].get("random_by_action_repeat", {})
    zero = data["reference"].get("zero_action")
    zero_text = f", doing nothing {zero['mean']:.0f}" if zero else ""
    for name, run in data["runs"].items():
        target = ">= 800 within 100k frames" if name.startswith("task") else ">= 70% of the oracle's return"
        done = data["summary"].get(name, {})
        fraction = ""
        if "fraction_of_oracle_best" in done:
            oracle = f" {done['oracle']:.0f}" if "oracle" in done else ""
            fraction = f"; {done['fraction_of_oracle_best']:.0%} of oracle{oracle}"
            if done.get("frames_to_target") is not None:
                fraction += f", target first reached at {done['frames_to_target'] / 1000:g}k frames"
        random = randoms.get(str(run["action_repeat"]))
        random_text = (f", random {random['mean']:.0f}" if random else "") + zero_text
        agent = run.get("config", {}).get("agent", {}).get("type", "drq")
        rows.append((f"{agent} {name} (action repeat {run['action_repeat']}, {run['frames'] // 1000}k frames, "
                     f"{run['wall_s'] / 60:.0f} min{random_text}): eval task return by frames",
                     f"{_curve_text(run['curve'])}{fraction}", target, *measured_where(run)))
    rows += [(f"drq {name}", f"not run: {why}", "-") for name, why in data.get("runs_not_run", {}).items()]
    return rows


def dreamerv3_learning_rows(data: dict) -> list[Row]:
    rows = [(f"dreamerv3 {task} ({entry['env_steps'] // 1000}k env steps"
             + (f" = {entry['frames'] // 1000}k frames" if "frames" in entry else "")
             + f", {entry['wall_s'] / 60:.0f} min): eval "
             f"return by env steps (random {entry['random']:.1f})",
             _curve_text(data["runs"][task]["curve"], "step"), entry["target"], *measured_where(data["runs"][task]))
            for task, entry in data["summary"].items()]
    return rows + [(f"dreamerv3 {task}", "not run", "-") for task in data.get("tasks_not_run", [])]


def dreamerv3_action_response_rows(data: dict) -> list[Row]:
    rows = []
    for run in data["runs"]:
        for steps, dims in run["response_by_steps"].items():
            ratios = ", ".join(f"{dim.replace('_', ' ')} {entry['ratio']:.2f}" for dim, entry in dims.items()
                               if abs(entry["real"]) >= 0.01) or "real responses all below 0.01"
            rows.append((f"dreamerv3 world model ({Path(run['run']).name}, {run['agent_updates']} updates): "
                         f"response to +1 vs -1 actions after {steps} steps, model / real", ratios, "~1"))
    return rows


def simulator_policy_rows(data: dict) -> list[Row]:
    if "not_run" in data:
        return [("policy trained in the simulator", f"not run: {data['not_run']}", "-")]
    real = data["runs"].get("real")
    rows = []
    for name, run in data["runs"].items():
        ratio = data["sim_over_real_return"].get(name)
        where = "the real env" if name == "real" else f"simulator {name.removeprefix('sim_')}"
        rows.append((f"DrQ, {data['env_steps']} env steps in {where}: real-env return (random "
                     f"{data['random_return']['mean']:.0f})", f"{run['real_env_return']['mean']:.0f}"
                     + ("" if ratio is None else f" ({ratio:.2f} of the real-env agent's)"),
                     "-" if real is None or name == "real" else "- (the real-env agent's return)"))
    return rows


def teco_rows(data: dict) -> list[Row]:
    ref = data["rollout_references"]["repeat_last_context_frame"]["psnr_db_mean"]
    return [(f"{m['kind']} ({m['steps']} steps): held-out bits per code; rollout PSNR",
             f"{m['val']['bits_per_code']:.3f}; {m['rollout']['psnr_db_mean']:.1f} dB",
             f"- (repeating the last frame: {ref:.1f} dB)") for m in data["models"]]


def simulator_rows(data: dict) -> list[Row]:
    target = data["targets"]["imagined_over_real_at_batch_64"]
    return [(f"{r.get('backend', 'videogpt')} {r['preset']} batch {r['batch']} {r['obs_type']} {r['precision']}: "
             "imagined steps/s (x real env)",
             f"{_f(r['steps_per_s'])} ({r['over_real']:.2f}x)", f">= {target}x at batch 64" if r["batch"] == 64
             else "-") for r in data["speed"]]


AREAS = ("environment throughput", "replay", "tokenizer", "likelihood", "VIPER overhead and quality",
         "agents' speed and learning", "TECO", "simulator")
SCRIPTS = (
    Script("env_throughput", AREAS[0], ("--num-envs", "1", "2", "--repeats", "1", "--steps", "100"), env_rows),
    Script("replay", AREAS[1], ("--capacity", "20000", "--seconds", "1"), replay_rows),
    Script("tokenizer_speed", AREAS[2], ("--presets", "cpu", "causal_cpu", "--seconds", "1"), tokenizer_speed_rows),
    Script("tokenizer_quality", AREAS[2], ("--quick",), tokenizer_quality_rows),
    Script("likelihood_speed", AREAS[3], ("--quick",), likelihood_rows),
    Script("video_model_quality", AREAS[3], ("--quick",), video_quality_rows),
    Script("viper_overhead", AREAS[4], ("--quick",), viper_overhead_rows),
    Script("viper_reward_quality", AREAS[4], ("--quick",), viper_quality_rows),
    Script("drq_speed", AREAS[5], ("--quick",), drq_speed_rows),
    Script("drq_learning", AREAS[5], ("--quick",), drq_learning_rows),
    Script("dreamerv3_speed", AREAS[5], ("--quick",), dreamerv3_speed_rows),
    Script("dreamerv3_learning", AREAS[5], ("--quick",), dreamerv3_learning_rows),
    Script("dreamerv3_action_response", AREAS[5], ("--quick",), dreamerv3_action_response_rows),
    Script("teco_quality", AREAS[6], ("--quick",), teco_rows),
    Script("simulator", AREAS[7], ("--quick",), simulator_rows),
    Script("simulator_policy", AREAS[7], ("--quick",), simulator_policy_rows),
)


def machine_label(machine: dict[str, Any] | None) -> str:
    """One line naming the machine a JSON result came from."""
    if not machine:
        return "not recorded"
    threads = f", {machine['torch_threads']} torch threads" if machine.get("torch_threads") else ""
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ""
    return f"{machine.get('cores')} cores {machine.get('cpu')}{gpu}, torch {machine.get('torch')}{threads}"


def run_script(script: Script, results: Path, quick: bool) -> dict[str, Any]:
    """Run one script (its output streams to the terminal); returns its exit status and wall seconds."""
    path = HERE / f"{script.name}.py"
    if not path.is_file():
        return {"status": "no script"}
    command = [sys.executable, str(path), *(script.quick_args if quick else ()), "--out",
               str(results / f"{script.name}.json")]
    print(f"\n=== {' '.join(command)}", flush=True)
    start = time.monotonic()
    code = subprocess.run(command, cwd=HERE.parent).returncode
    return {"status": "ok" if code == 0 else f"exit {code}", "wall_s": round(time.monotonic() - start, 1)}


def summary(results: Path, runs: dict[str, dict[str, Any]] | None = None) -> str:
    """summary.md's text from the JSON files in ``results``."""
    machines: dict[str, str] = {}
    lines = [f"# Benchmark summary ({'quick' if results.name == 'quick' else 'full'} budgets)", "",
             f"Read from the JSON files in `{results.relative_to(HERE.parent)}` by `benchmarks/run_all.py`; "
             "machines are listed at the end. Shared machines make seconds noisy.", ""]
    for area in AREAS:
        lines += [f"## {area[0].upper()}{area[1:]}", "", "| script | figure | measured | target | machine |",
                  "| --- | --- | --- | --- | --- |"]
        for script in (s for s in SCRIPTS if s.area == area):
            lines += script_rows(script, results, machines, (runs or {}).get(script.name))
        lines.append("")
    lines += ["## Machines", "", *(f"- {key}: {label}" for label, key in machines.items()), ""]
    return "\n".join(lines)


def script_rows(script: Script, results: Path, machines: dict[str, str], run: dict[str, Any] | None) -> list[str]:
    file = results / f"{script.name}.json"
    if not (HERE / f"{script.name}.py").is_file():
        return [f"| {script.name} | not run: no such script yet | | | |"]
    if not file.is_file() or script.rows is None:
        why = f" ({run['status']})" if run and run["status"] != "ok" else ""
        return [f"| {script.name} | not run{why}: no `{file.name}` | | | |"]
    data = json.loads(file.read_text())
    def machine_key(machine: dict[str, Any] | None) -> str:
        return machines.setdefault(machine_label(machine), f"M{len(machines) + 1}")

    try:
        rows = script.rows(data)
    except (KeyError, TypeError, ZeroDivisionError) as error:
        return [f"| {script.name} | unreadable result (missing {error}) | | | {machine_key(data.get('machine'))} |"]
    lines = []
    for figure, measured, target, *where in rows:
        machine, date = where if where else (data.get("machine"), data.get("date", ""))
        lines.append(f"| {script.name} | {figure} | {measured} | {target} | {machine_key(machine)} {date} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke budgets (under 15 minutes), into results/quick/")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite summary.md from existing JSON")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", help="run only these scripts (names without .py)")
    args = parser.parse_args(argv)
    results = RESULTS / "quick" if args.quick else RESULTS
    results.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    if not args.summary_only:
        for script in SCRIPTS:
            if not args.only or script.name in args.only:
                runs[script.name] = run_script(script, results, args.quick)
        print("\n" + "\n".join(f"{name:22} {r['status']:10} {r.get('wall_s', '')}" for name, r in runs.items()))
    out = results / "summary.md"
    out.write_text(summary(results, runs))
    print(f"wrote {out}")
    return 0 if all(r["status"] in ("ok", "no script") for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
