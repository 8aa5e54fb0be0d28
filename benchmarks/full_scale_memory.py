"""Memory at the report's scale: a generated stand-in of its dataset (180 songs of about 4
minutes, about 2107 windows of 128 x 1292) prepared, then conv_vae trained on it for one epoch.

    python -m benchmarks.full_scale_memory [--songs-per-cell 15] [--seconds 235] [--epochs 1]

Each step runs as `python -m pipelines.<step>` in its own process; psutil samples the resident
memory (RSS) of that process and of its whole tree (prepare's decode workers) every 0.2 s.
Also reports the float16 cache size on disk and the wall time of each step.
Writes benchmarks/results/full_scale_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from components.config import PROJECT_ROOT
from components.demo_corpus import generate_demo_corpus

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "full_scale_memory.json"
GB = 2**30


def peak_memory(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run argv; its peak RSS alone and summed over its process tree, in GB, and its seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    root = psutil.Process(proc.pid)
    own = tree = 0
    while proc.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
            sizes = [m.memory_info().rss for m in members]
        except psutil.NoSuchProcess:  # a worker ended between listing and reading
            continue
        own, tree = max(own, sizes[0]), max(tree, sum(sizes))
        time.sleep(0.2)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"peak_rss_gb": round(own / GB, 2), "peak_rss_tree_gb": round(tree / GB, 2),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--songs-per-cell", type=int, default=15, help="x 12 language-genre cells")
    p.add_argument("--seconds", type=float, default=235.0, help="shortest song; the longest is +10 s")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--model", default="conv_vae")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="full-scale-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        metadata = generate_demo_corpus(folder / "corpus", songs_per_cell=args.songs_per_cell,
                                        min_seconds=args.seconds, max_seconds=args.seconds + 10)
        generated = time.perf_counter() - started
        env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT),
                            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
        common = ["--data", str(metadata), "--data.cache_dir", str(folder / "cache"),
                  "--train.checkpoint_dir", str(folder / "checkpoints")]
        prepare = peak_memory([sys.executable, "-m", "pipelines.prepare", "--model", args.model, *common],
                              folder, env)
        (cache,) = (folder / "cache").iterdir()
        manifest = json.loads((cache / "manifest.json").read_text())
        train = peak_memory([sys.executable, "-m", "pipelines.train", "--model", args.model, *common,
                             "--train.epochs", str(args.epochs)], folder, env)
        result = {
            "model": args.model, "songs": manifest["songs"], "windows": manifest["windows"],
            "window_hours": round(manifest["audio_seconds"] / 3600, 2),  # 30 s x windows (they overlap)
            "generate_corpus_s": round(generated, 1),
            "cache_gb_on_disk": round((cache / "windows.f16").stat().st_size / GB, 3),
            "prepare": prepare, "train": train | {"epochs": args.epochs},
            "cores": os.cpu_count(), "machine_ram_gb": round(psutil.virtual_memory().total / GB, 1),
        }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
