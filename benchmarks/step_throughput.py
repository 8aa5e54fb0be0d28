"""Training-step throughput and peak accelerator memory per architecture at the report's full
size (batch 32, 128 x 1292), on this machine's device (CUDA when present, else the CPU), eager
and with the trainer's layout and compiler options.

    python -m benchmarks.step_throughput [--models conv_vae,vade] [--variants eager,channels_last,compile]
                                         [--steps 5] [--batch 32] [--overrides k=v ...] [--out FILE]

Each (architecture, variant) runs the trainer's recipe (autocast as train.amp chooses, loss,
backward, clipping, fused Adam; benchmarks.trainer_overhead's bare loop) on one random batch
already on the device: two warm-up steps (torch.compile compiles there, timed apart), then
`steps` timed steps. On CUDA also the peak allocated GPU memory of the timed steps. Variants:
eager; channels_last (train.channels_last); compile (train.compile=default); cpu_preset
(experiments/presets/cpu.yaml: 64 x 646 features). Each row also gives the parameter count.
Writes benchmarks/results/step_throughput_<device>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.trainer_overhead import bare_loop
from components.config import PROJECT_ROOT, load_config
from components.models import MODELS, adapt_to_data, build_model, count_parameters
from components.settings import Experiment
from components.training.trainer import prepare_model, resolve_device

VARIANTS = {"eager": [], "channels_last": ["train.channels_last=true"], "compile": ["train.compile=default"],
            "cpu_preset": ["preset=cpu"]}
GB = 2**30


def random_batch(config: Experiment, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    n_mels, frames = config.features.shape
    labels = torch.arange(size) % 3
    batch = {"mel": torch.randn(size, 1, n_mels, frames), "genre": labels, "language": labels,
             "lyrics": torch.randn(size, getattr(config.model, "lyrics_dim", None) or 64),
             "has_lyrics": torch.arange(size) % 4 != 0}
    return {k: v.to(device) for k, v in batch.items()}


def measure(name: str, variant: str, steps: int, size: int, overrides: list[str]) -> dict[str, Any]:
    config = load_config(name, [*overrides, *VARIANTS[variant]])
    config = adapt_to_data(config, {"genre": ["g1", "g2", "g3"], "language": ["l1", "l2", "l3", "l4"]}, 64)
    device = resolve_device(config.train.device)
    torch.manual_seed(0)
    model = prepare_model(build_model(name, config), device, config.train)
    batch = random_batch(config, size, device)
    started = time.perf_counter()
    bare_loop(model, [batch, batch], config, 1, fused=True)  # warm-up: kernels, allocator, compile
    warm_up = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = bare_loop(model, [batch] * steps, config, 1, fused=True)
    result = {"model": name, "variant": variant, "input": list(config.features.shape),
              "parameters": count_parameters(model), "samples_per_s": round(steps * size / seconds, 2),
              "step_s": round(seconds / steps, 4), "warm_up_s": round(warm_up, 1)}
    if device.type == "cuda":
        result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / GB, 2)
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. train.amp=false")
    p.add_argument("--out", type=Path, default=None,
                   help="results file (default: benchmarks/results/step_throughput_<device>.json)")
    args = p.parse_args(argv)
    device = resolve_device("auto")
    rows = []
    for name in args.models.split(","):
        for variant in args.variants.split(","):
            rows.append(measure(name, variant, args.steps, args.batch, args.overrides))
            print(json.dumps(rows[-1]), flush=True)
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "threads": torch.get_num_threads(), "batch": args.batch, "steps": args.steps, "rows": rows}
    out = args.out or PROJECT_ROOT / "benchmarks" / "results" / f"step_throughput_{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
