"""What a command costs a user at the terminal: answered by the warm job parent, against the same
command in a fresh interpreter (``LAB2MARKET_WARM=0``). Prints one JSON object.

For each command, ``--rounds`` timings of ``python -m core ...`` from start to exit, the two ways
taking turns, side by side in one run; the medians and their ratio. The commands: listing runs,
one run's status, a training recorded (``train --create-only``: validate, record the run, its
config and its dataset's fingerprint), the datasets (``datasets list``: every built-in
described, which a fresh interpreter must build) and a run's evaluation (``evaluate RUN``: its
test split's report, from predictions stored by the first round). The floor is a bare
``python -c pass`` (the interpreter's own start, which no command avoids).

Usage: ``python benchmarks/cli_latency.py [--rounds 7]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runs import warm  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LAB2MARKET_HOME": tmp}
        cold_env = {**env, "LAB2MARKET_WARM": "0"}
        assert warm.wait_ready(timeout=120), "no warm parent"
        run_id = json.loads(subprocess.run(
            [sys.executable, "-m", "core", "train", "--dataset", "digits", "--epochs", "1",
             "--json"], cwd=ROOT, check=True, capture_output=True, text=True,
            env=env).stdout)["run_id"]
        commands = {
            "runs": ["runs"],
            "status": ["status", run_id],
            "train_create": ["train", "--dataset", "digits", "--epochs", "1", "--create-only"],
            "datasets_list": ["datasets", "list"],
            "evaluate": ["evaluate", run_id],
        }
        floor = statistics.median(timed(["-c", "pass"], env) for _ in range(args.rounds))
        results = {}
        for name, argv in commands.items():
            warm_s, cold_s = [], []
            for _ in range(args.rounds):  # taking turns: a load spike hits both alike
                warm_s.append(timed(["-m", "core", *argv], env))
                cold_s.append(timed(["-m", "core", *argv], cold_env))
            w, c = statistics.median(warm_s), statistics.median(cold_s)
            results[name] = {"warm_s": round(w, 3), "cold_s": round(c, 3),
                             "warm_vs_cold": round(w / c, 2),
                             "warm_above_floor_s": round(w - floor, 3)}
    print(json.dumps({"settings": {"rounds": args.rounds, "cpus": os.cpu_count()},
                      "python_floor_s": round(floor, 3), "commands": results}, indent=2))


if __name__ == "__main__":
    main()
