"""Three small costs behind the trainer's settings, each against its alternative in the same run:
normalising a full-size batch (numpy cast, then out of place vs torch cast, then in place), writing 1 GB with
torch.save with and without per-record CRC32, and full-size conv_vae training steps with
glibc's default mmap threshold vs train.lean_host_memory (each in a fresh process: the
setting is process-wide).

    python -m benchmarks.io_and_allocator [--steps 5] [--rounds 2] [--checkpoint-mb 1024]
                                          [--overrides k=v ...] [--out FILE]

--overrides change the config of the batch and of the training steps (the smoke test's smaller
features and model); --rounds is how many fresh processes each allocator setting gets.
Writes benchmarks/results/io_and_allocator.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from components.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "io_and_allocator.json"
BATCH = 32


def median_ms(run, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def normalisation(overrides: list[str]) -> dict[str, float]:
    """A batch of 32 windows of 128 x 1292 float16 (the config's shape), normalised per mel bin
    to float32."""
    from components.config import load_config

    n_mels, frames = load_config("conv_vae", overrides).features.shape
    raw = (np.random.default_rng(0).standard_normal((BATCH, n_mels, frames)) * 20).astype(np.float16)
    mean = np.random.default_rng(1).standard_normal(n_mels).astype(np.float32)[:, None]
    std = (np.random.default_rng(2).random(n_mels).astype(np.float32) + 1)[:, None]
    mean_t, std_t = torch.from_numpy(mean), torch.from_numpy(std)
    before = median_ms(lambda: (torch.from_numpy(raw.astype(np.float32)) - mean_t) / std_t)
    now = median_ms(lambda: torch.from_numpy(raw).float().sub_(mean_t).div_(std_t))
    return {"numpy_cast_then_out_of_place_ms": before, "torch_cast_and_in_place_ms": now}


def checkpoint_write(folder: Path, megabytes: int) -> dict[str, list[float]]:
    """Seconds to torch.save `megabytes` (1 GB by default), alternating with and without CRC32,
    three times each."""
    state = {"weights": torch.randn(megabytes, 2**18)}
    seconds: dict[str, list[float]] = {"with_crc32_s": [], "without_crc32_s": []}
    setting = torch.serialization.get_crc32_options()  # process-wide: restored for the caller
    try:
        for _ in range(3):
            for crc, key in ((True, "with_crc32_s"), (False, "without_crc32_s")):
                torch.serialization.set_crc32_options(crc)
                started = time.perf_counter()
                torch.save(state, folder / "state.pt")
                seconds[key].append(round(time.perf_counter() - started, 2))
                (folder / "state.pt").unlink()
    finally:
        torch.serialization.set_crc32_options(setting)
    return seconds


def steps(lean: bool, count: int, overrides: list[str]) -> dict[str, float]:
    """In this process: `count` conv_vae training steps at batch 32 (full size unless overrides)."""
    from components.config import load_config
    from components.models import build_model
    from components.training.host_memory import map_large_allocations
    from components.training.trainer import make_optimizer, optimizer_step

    if lean:
        map_large_allocations()
    config = load_config("conv_vae", overrides)
    model = build_model("conv_vae", config).train()
    optimizer = make_optimizer(model.parameters(), config.train, torch.device("cpu"))
    batch = {"mel": torch.randn(BATCH, 1, *config.features.shape),
             "genre": torch.zeros(BATCH, dtype=torch.long), "language": torch.zeros(BATCH, dtype=torch.long)}
    times = []
    for _ in range(count):
        started = time.perf_counter()
        optimizer_step(model.loss(batch, model(batch), 5)["total"], optimizer, None, model.parameters(), 0.5)
        times.append(time.perf_counter() - started)
    return {"step_s": round(statistics.median(times[1:]), 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def allocator(count: int, rounds: int, overrides: list[str]) -> dict[str, list[dict[str, float]]]:
    """Default and lean, alternating, `rounds` times each (twice by default), each in a fresh process."""
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    runs: dict[str, list[dict[str, float]]] = {"default": [], "lean_host_memory": []}
    for _ in range(rounds):
        for key in runs:
            out = subprocess.run([sys.executable, "-m", "benchmarks.io_and_allocator", "--steps", str(count),
                                  "--only-steps", key, "--overrides", *overrides],
                                 env=env, capture_output=True, text=True, check=True)
            runs[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="training steps per process (the first is a warm-up)")
    p.add_argument("--rounds", type=int, default=2, help="fresh processes per allocator setting")
    p.add_argument("--checkpoint-mb", type=int, default=1024, help="size of the state torch.save writes")
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. features.n_mels=16")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    p.add_argument("--only-steps", choices=["default", "lean_host_memory"], help="internal")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be at least 2: the first step is a warm-up, not timed")
    if args.only_steps:
        print(json.dumps(steps(args.only_steps == "lean_host_memory", args.steps, args.overrides)))
        return
    # The README quotes checkpoint_write_1gb: another size is written under its own name.
    size = "1gb" if args.checkpoint_mb == 1024 else f"{args.checkpoint_mb}mb"
    written = f"checkpoint_write_{size}"
    with tempfile.TemporaryDirectory(prefix="io-allocator-") as tmp:
        result = {"threads": torch.get_num_threads(), "normalisation": normalisation(args.overrides),
                  written: checkpoint_write(Path(tmp), args.checkpoint_mb),
                  "training_steps": allocator(args.steps, args.rounds, args.overrides)}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
