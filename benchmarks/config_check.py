"""How long a command line takes to refuse a config typo, against a bare interpreter and against
importing torch, in the same run (each command a fresh process, interleaved, median of N).

    python -m benchmarks.config_check [--repeats 7] [--out FILE]

Both a typo in a shared key (`--eval.method kmean`) and one in an architecture's own key
(`--model.fusion concat`, checked against its Settings class read from its source) are refused
before the architecture's module, torch or MLflow is imported. Writes
benchmarks/results/config_check.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from components.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "config_check.json"
COMMANDS = {
    "bare interpreter (python -c pass)": ["-c", "pass"],
    "import torch": ["-c", "import torch"],
    "shared-key typo (pipelines.train --eval.method kmean)": [
        "-m", "pipelines.train", "--model", "conv_vae", "--eval.method", "kmean"],
    "own-key typo (pipelines.train --model multimodal --model.fusion concat)": [
        "-m", "pipelines.train", "--model", "multimodal", "--model.fusion", "concat"],
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved, so a noisy moment hits every command alike
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            done = subprocess.run([sys.executable, *command], cwd=PROJECT_ROOT, capture_output=True,
                                  text=True)
            seconds[name].append(time.perf_counter() - started)
            if "typo" in name and "error:" not in done.stderr:
                raise SystemExit(f"{name}: expected a one-line error, got {done.stderr[-500:]!r}")
    median = {name: round(statistics.median(times), 3) for name, times in seconds.items()}
    torch_import = median["import torch"]
    result = {"repeats": args.repeats, "median_seconds": median,
              "over_import_torch": {name: round(value / torch_import, 2) for name, value in median.items()}}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
