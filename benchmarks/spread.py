"""The spread behind the test suite's thresholds and the derived hyperparameters: each asserted editing metric on
several tiny fact worlds (world seeds) under several CPU kernel configurations (the paths other CPUs take).

`python -m benchmarks.spread [--seeds 0,1,2,3,4] [--lambda-factors 0.3]` writes benchmarks/results/spread.json and
prints a table (metric, min / median / max over seeds and configurations). Worlds are built once (portable numerics,
the same on any machine) into `.worlds/`; each kernel configuration runs in a child process started with it, since
kernels are chosen when a process starts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, WORLDS_DIR, save_results, say

# The kernel paths of other CPUs, forced on this one (`editor.determinism`): native, an AVX2 machine, portable.
KERNEL_CONFIGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    "baseline": {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"},
}
ROUND = 8


def world_dir(seed: int) -> Path:
    return WORLDS_DIR / f"spread-tiny-{seed}"


def measure(seed: int, lambda_factor: float, overrides: dict[str, Any]) -> dict[str, float]:
    """Every asserted metric of the suite on world `seed`, computed as the tests compute it."""
    import torch

    from editor.evaluate import evaluate_requests, perplexity
    from editor.model import load_model
    from editor.rounds import run_round
    from editor.world import load_world
    from tests.editor.test_world_efficacy import efficacy, world_state

    torch.set_num_threads(1)  # the numbers, not the speed: one thread never oversubscribes a shared machine
    world = load_world(world_dir(seed))
    requests = world.requests()

    def state(method: str):
        return world_state(world, method, lambda_factor, **overrides)

    results: dict[str, float] = {}
    for method in ("nse", "memit", "alphaedit", "rome"):
        s = state(method)
        batch = requests[:ROUND]
        for part in ([[r] for r in batch] if method == "rome" else [batch]):
            run_round(s, part, method)
        results[f"one_round_of_8_efficacy[{method}]"] = efficacy(s.loaded, batch)
    s = state("nse")
    for i in range(0, 5 * ROUND, ROUND):
        run_round(s, requests[i:i + ROUND], "nse")
    results["five_nse_rounds_first_round_efficacy"] = efficacy(s.loaded, requests[:ROUND])
    # The lifecycle fixture: 3 NSE rounds of 4; then the same history without the first request of round 2.
    s = state("nse")
    for i in range(0, 12, 4):
        run_round(s, requests[i:i + 4], "nse")
    results["three_rounds_of_4_teacher_forced_efficacy"] = evaluate_requests(
        s.loaded.model, s.loaded.tokenizer, requests[:12]).aggregate["efficacy"]
    s = state("nse")
    removed = requests[4]
    for i in range(0, 12, 4):
        run_round(s, [r for r in requests[i:i + 4] if r is not removed], "nse")
    kept = [r for r in requests[:12] if r is not removed]
    results["revert_others_teacher_forced_efficacy"] = evaluate_requests(
        s.loaded.model, s.loaded.tokenizer, kept).aggregate["efficacy"]
    results["revert_removed_efficacy"] = evaluate_requests(
        s.loaded.model, s.loaded.tokenizer, [removed]).aggregate["efficacy"]
    loaded = load_model(world.model_dir, device="cpu")
    heldout = world.heldout_path.read_text(encoding="utf-8").splitlines()
    results["heldout_perplexity_over_vocabulary"] = perplexity(loaded.model, loaded.tokenizer, heldout) / len(
        loaded.tokenizer)
    return results


def _child(seeds: list[int], lambda_factor: float, overrides: dict[str, Any]) -> None:
    print(json.dumps({seed: measure(seed, lambda_factor, overrides) for seed in seeds}))


def run(seeds: list[int], lambda_factors: list[float], configs: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    from editor.world import build_world

    for seed in seeds:
        info = build_world(world_dir(seed), preset="tiny", seed=seed, train_seed=seed, progress=False)
        say(f"world seed {seed}: {info.state_hash[:12]}, knows {info.accuracy:.0%}")
    table: dict[str, Any] = {}
    for factor in lambda_factors:
        per_config = {}
        for name in configs:
            say(f"lambda {factor} d_ff, kernels {name}")
            done = subprocess.run([sys.executable, "-m", "benchmarks.spread", "--child", ",".join(map(str, seeds)),
                                   "--lambda-factors", str(factor), "--overrides", json.dumps(overrides)],
                                  env={**os.environ, **KERNEL_CONFIGS[name]}, cwd=REPO_ROOT,
                                  capture_output=True, text=True, check=True)
            per_config[name] = json.loads(done.stdout.strip().splitlines()[-1])
        metrics = sorted(next(iter(next(iter(per_config.values())).values())))
        rows = {}
        for metric in metrics:
            values = [per_config[c][str(s)][metric] for c in per_config for s in seeds]
            rows[metric] = {"min": min(values), "median": statistics.median(values), "max": max(values),
                            "n": len(values), "values": {c: [per_config[c][str(s)][metric] for s in seeds]
                                                         for c in per_config}}
        table[str(factor)] = rows
    return {"seeds": seeds, "kernel_configs": {c: KERNEL_CONFIGS[c] for c in configs}, "overrides": overrides,
            "lambda_factors": lambda_factors, "metrics": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--lambda-factors", default="0.3")
    parser.add_argument("--configs", default=",".join(KERNEL_CONFIGS), help="kernel configurations to run under")
    parser.add_argument("--overrides", default="{}", help="other hyperparameters, as a JSON object")
    parser.add_argument("--out", default="spread", help="results file name under benchmarks/results/")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    factors = [float(x) for x in args.lambda_factors.split(",")]
    if args.child is not None:
        return _child([int(x) for x in args.child.split(",")], factors[0], json.loads(args.overrides))
    started = time.perf_counter()
    result = run([int(x) for x in args.seeds.split(",")], factors, args.configs.split(","), json.loads(args.overrides))
    save_results(args.out, result, quick=False, seconds=time.perf_counter() - started)
    for factor, rows in result["metrics"].items():
        print(f"lambda = {factor} d_ff")
        for metric, row in rows.items():
            print(f"  {metric:48s} min {row['min']:.3f}  median {row['median']:.3f}  max {row['max']:.3f}  "
                  f"(n={row['n']})")
    return None


if __name__ == "__main__":
    main()
