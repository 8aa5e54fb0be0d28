"""Full-size conv_vae training step on this CPU: float32 vs bfloat16 autocast, as a ratio.

    python -m benchmarks.cpu_precision [--batch 8] [--steps 2]

Backs the documented reason for turning CPU autocast off where oneDNN has no bf16 kernels.
Writes benchmarks/results/cpu_precision.json.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from components.config import PROJECT_ROOT
from components.models import build_model

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "cpu_precision.json"


def step_seconds(bf16: bool, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = build_model("conv_vae").train()
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args()
    fp32 = step_seconds(False, args.batch, args.steps)
    bf16 = step_seconds(True, args.batch, args.steps)
    result = {"batch": args.batch, "fp32_step_s": round(fp32, 2), "bf16_autocast_step_s": round(bf16, 2),
              "bf16_over_fp32": round(bf16 / fp32, 1), "threads": torch.get_num_threads(),
              "onednn_bf16_kernels": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())}
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
