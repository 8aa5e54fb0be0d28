"""Every architecture on the demo corpus: epoch wall time on this machine, clustering scores, and
the training memory each needs at the report's full size (batch 32, 128 x 1292).

    python -m benchmarks.architectures [--epochs 3] [--models conv_vae,vade] [--data demo]
                                       [--overrides 'k=v ...'] [--out FILE]

Memory without a GPU is an estimate, said as such: parameters + gradients + Adam's two moments
(4 x 4 bytes per parameter) plus the activations kept for backward, measured with forward hooks
on one example and scaled to 32 (float32; float16 AMP halves the activation part), for each model
of --models. --overrides change the config of the training runs and of the estimates (at the
report's size unless they change the features). Writes benchmarks/results/architectures.json (or
--out) and prints the tables of benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import mlflow
import torch

from components.config import PROJECT_ROOT, load_config
from components.evaluation.comparison import comparison_table, to_markdown
from components.models import MODELS, build_model, count_parameters
from components.tracking.mlflow_runs import latest_training_runs
from pipelines.train import main as train

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "architectures.json"
EXPERIMENT = "architectures-benchmark"
GB = 2**30


def activation_bytes(name: str, overrides: list[str]) -> int:
    """Bytes of every module output of one example (full size unless overrides) in train mode
    (float32)."""
    config = load_config(name, overrides)
    model = build_model(name, config).train()
    n_mels, frames = model.input_shape
    batch = {"mel": torch.randn(2, 1, n_mels, frames), "genre": torch.tensor([0, 1]),
             "language": torch.tensor([0, 1]),
             "lyrics": torch.randn(2, getattr(config.model, "lyrics_dim", None) or 1),
             "has_lyrics": torch.tensor([True, False])}
    total = 0

    def hook(_module, _inputs, output):
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * 4
    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return total // 2  # two examples ran (BatchNorm needs more than one)


def memory_estimates(names: list[str], overrides: list[str]) -> dict[str, dict[str, float]]:
    estimates = {}
    for name in names:
        params = count_parameters(build_model(name, load_config(name, overrides)))
        states = params * 4 * 4
        activations = activation_bytes(name, overrides) * 32
        estimates[name] = {"parameters": params, "weights_grads_adam_gb": round(states / GB, 2),
                           "activations_fp32_gb": round(activations / GB, 2),
                           "total_fp32_gb": round((states + activations) / GB, 2),
                           "total_amp_gb": round((states + activations / 2) / GB, 2)}
    return estimates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--data", default="", help="data.source of the runs (default: the config's, the demo)")
    p.add_argument("--overrides", default="", help="extra key=value config overrides for every run and "
                   "estimate, 'k=v k=v'")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    names = args.models.split(",")
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}")
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_experiment(EXPERIMENT)
    os.environ["MLFLOW_EXPERIMENT_ID"] = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    epoch_seconds = {}
    for name in names:
        overrides = [f"train.epochs={args.epochs}", "tracking.system_metrics=false", *args.overrides.split()]
        if name == "vade":
            overrides.append(f"model.pretrain_epochs={args.epochs}")
        run_id = train(["--model", name, "--data", args.data, "--overrides", " ".join(overrides)])
        history = mlflow.MlflowClient().get_metric_history(run_id, "train/epoch_seconds")
        epoch_seconds[name] = round(sum(m.value for m in history) / len(history), 1)
    table = comparison_table(latest_training_runs(EXPERIMENT))
    result = {"epochs": args.epochs, "epoch_seconds": epoch_seconds,
              "memory": memory_estimates(names, args.overrides.split()),
              "comparison": json.loads(table.to_json(orient="records"))}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(to_markdown(table))
    print("| model | parameters | s / epoch (this CPU) | weights+grads+Adam GB | activations GB (fp32) "
          "| total GB fp32 | total GB AMP | fits 12 GB |\n|---|---|---|---|---|---|---|---|")
    for name, memory in result["memory"].items():
        print(f"| {name} | {memory['parameters']:,} | {epoch_seconds.get(name, '')} | "
              f"{memory['weights_grads_adam_gb']} | {memory['activations_fp32_gb']} | "
              f"{memory['total_fp32_gb']} | {memory['total_amp_gb']} | "
              f"{'yes' if memory['total_amp_gb'] < 12 else 'no'} |")


if __name__ == "__main__":
    main()
