"""Full-size conv_vae training step on this CPU: float32 vs bfloat16 autocast, as a ratio.

    python -m benchmarks.cpu_precision [--batch 8] [--steps 2] [--overrides k=v ...] [--out FILE]

Backs the documented reason for turning CPU autocast off where oneDNN has no bf16 kernels.
--overrides change the model's config (full size unless they change it: the smoke test's small one).
Writes benchmarks/results/cpu_precision.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from components.config import PROJECT_ROOT, load_config
from components.models import build_model

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "cpu_precision.json"


def step_seconds(bf16: bool, batch: int, steps: int, overrides: list[str]) -> float:
    torch.manual_seed(0)
    model = build_model("conv_vae", load_config("conv_vae", overrides)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    data = {"mel": torch.randn(batch, 1, *model.input_shape)}
    times = []
    for _ in range(steps + 1):  # the first step warms up allocators and kernels
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(data)
        loss = model.loss(data, out, epoch=0)["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. features.n_mels=16")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    fp32 = step_seconds(False, args.batch, args.steps, args.overrides)
    bf16 = step_seconds(True, args.batch, args.steps, args.overrides)
    result = {"batch": args.batch, "fp32_step_s": round(fp32, 2), "bf16_autocast_step_s": round(bf16, 2),
              "bf16_over_fp32": round(bf16 / fp32, 1), "threads": torch.get_num_threads(),
              "onednn_bf16_kernels": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
