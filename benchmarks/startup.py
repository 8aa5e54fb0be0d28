"""Start-up: seconds from `mlflow run` to the first training step, and where they go.

    python -m benchmarks.startup [--model conv_vae] [--repeats 2] [--data demo] [--overrides k=v ...]
                                 [--out FILE]

End to end: `mlflow run . -P model=<model> -P train.epochs=1 --env-manager local` on the demo
corpus with its feature cache warm, into a temporary tracking store. psutil reads when the
train process starts (before that: the `mlflow run` CLI, which resolves the project and starts
the run); the run's metric train/startup_seconds says how long after its own start the process
finished its first optimizer step. The process is stopped once that metric is logged.

Inside the process, the phases are then timed one after another in a fresh interpreter
(`--phases`): importing the training composition (pipelines.training_run), connecting to the
tracking store and starting a run, the feature-cache check, building the model, and one training
step at batch 32. --data (another corpus) and --overrides (e.g. smaller features, for the smoke test)
change the config of both: to `mlflow run` as its `-P data=...` and `-P overrides=...` parameters.
Writes benchmarks/results/startup.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import chdir
from pathlib import Path

import psutil

from components.config import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "startup.json"
BIN = Path(sys.executable).parent


def end_to_end(model: str, folder: Path, data: str, overrides: list[str]) -> dict[str, float]:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = os.environ | {"MLFLOW_TRACKING_URI": uri, "PATH": f"{BIN}:{os.environ['PATH']}"}
    argv = [str(BIN / "mlflow"), "run", str(PROJECT_ROOT), "-P", f"model={model}", "-P", "train.epochs=1",
            "-P", f"data={data}", "-P", f"overrides={' '.join(overrides) or 'none'}",
            "--env-manager", "local"]
    import mlflow

    # The store's schema exists before `mlflow run` and we poll it. Created here, its default
    # artifact root ./mlruns is this folder's, not the project's (where `mlflow run` runs the command).
    with chdir(folder):
        client = mlflow.MlflowClient(uri)
        client.search_experiments()
    log = folder / "mlflow-run.log"
    started = time.time()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    train_started = None
    try:
        while True:
            time.sleep(0.2)
            if proc.poll() is not None:
                raise RuntimeError(f"`{' '.join(argv)}` exited with {proc.returncode} before its first "
                                   f"epoch:\n{log.read_text(errors='replace')[-3000:]}")
            if train_started is None:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    if "pipelines.train" in " ".join(child.cmdline()):
                        train_started = child.create_time()
                continue
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
            metric = next((r.data.metrics["train/startup_seconds"] for r in runs
                           if "train/startup_seconds" in r.data.metrics), None)
            if metric is not None:
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
    return {"mlflow_run_cli_s": round(train_started - started, 2),
            "train_process_to_first_step_s": round(metric, 2),
            "mlflow_run_to_first_step_s": round(train_started - started + metric, 2)}


def phases(model: str, folder: Path, overrides: list[str]) -> dict[str, float]:
    """Each phase of the train process before its first step, timed in this (fresh) interpreter."""
    times: dict[str, float] = {}
    started = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal started
        now = time.perf_counter()
        times[name] = round(now - started, 2)
        started = now

    import pipelines.training_run  # noqa: F401  (what pipelines.train imports once the config is checked)
    lap("import_pipelines_train_s")
    from components.config import load_config
    from components.data.dataset import WindowDataset, make_loader
    from components.data.preparation import prepare_features
    from components.models import adapt_to_data, build_model
    from components.tracking import mlflow_runs as tracking
    from components.training.trainer import Trainer
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'phases.db'}"
    config = load_config(model, [*overrides, f"train.checkpoint_dir={folder / 'checkpoints'}"])
    lap("load_config_s")
    with tracking.run(config.tracking, run_name="startup-phases"):
        lap("tracking_connect_and_start_run_s")
        cache = prepare_features(config)
        lap("feature_cache_check_s")
        config = adapt_to_data(config, cache.vocab, None)
        model_ = build_model(model, config)
        trainer = Trainer(model_, config, folder / "checkpoints" / "phases")
        lap("build_model_and_trainer_s")
        loader = make_loader(WindowDataset(cache, "train"), config.train.batch_size, True, 0)
        batch = next(iter(loader))
        lap("first_batch_s")
        out = trainer.model(batch)
        loss = trainer.model.loss(batch, out, 0)["total"]
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
        lap("first_training_step_s")
    return times


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="conv_vae")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data", default="demo", help="data.source: demo, a metadata.csv or a folder")
    p.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. features.n_mels=16")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    p.add_argument("--phases", action="store_true", help="time the in-process phases, print JSON")
    args = p.parse_args(argv)
    overrides = [*args.overrides, f"data.source={args.data}"]
    with tempfile.TemporaryDirectory(prefix="startup-") as tmp:
        folder = Path(tmp)
        if args.phases:
            print(json.dumps(phases(args.model, folder, overrides)))
            return
        from components.config import load_config
        from components.data.preparation import prepare_features
        prepare_features(load_config(args.model, overrides))  # the cache is warm, as on a second run
        runs = []
        for i in range(args.repeats):
            (folder / f"run-{i}").mkdir()
            runs.append(end_to_end(args.model, folder / f"run-{i}", args.data, args.overrides))
        measured = [json.loads(subprocess.run(
            [sys.executable, "-m", "benchmarks.startup", "--phases", "--model", args.model,
             "--data", args.data, "--overrides", *args.overrides],
            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
            for _ in range(args.repeats)]
    result = {"model": args.model, "end_to_end": runs, "phases": measured}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
