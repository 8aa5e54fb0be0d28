"""Memory at the report's scale: a generated stand-in of its dataset (180 songs of about 4
minutes, about 2107 windows of 128 x 1292) prepared, then conv_vae trained on it for one epoch.

    python -m benchmarks.full_scale_memory [--songs-per-cell 15] [--seconds 235] [--epochs 1]
        [--variants default,activation_checkpointing,activation_checkpointing_lean]
        [--overrides k=v ...] [--out FILE]

Each step runs as `python -m pipelines.<step>` in its own process; psutil samples the resident
memory (RSS) of that process and of its whole tree (prepare's decode workers) every 0.2 s, and
/proc its anonymous and file-backed parts. Then, for comparison, a bare loop of three training
steps of the same model at batch 32 on random windows in memory, also in its own process: the
memory the model's arithmetic needs whatever the platform does. Training and bare loop run
per variant (--variants): the defaults, train.activation_checkpointing, and that with
train.lean_host_memory; a variant not rerun keeps its numbers from the last results file.
Also reports the float16 cache size on disk and the wall time of each step. --overrides change
the config of every step (prepare, train, bare loop), e.g. the smoke test's smaller features.
Writes benchmarks/results/full_scale_memory.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from components.config import PROJECT_ROOT
from corpora.demo_corpus import generate_demo_corpus

RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "full_scale_memory.json"
VARIANTS = {"default": [], "activation_checkpointing": ["train.activation_checkpointing=true"],
            "activation_checkpointing_lean": ["train.activation_checkpointing=true",
                                              "train.lean_host_memory=true"]}
GB = 2**30


def resident_kinds(pid: int) -> dict[str, int]:
    """Bytes of the process's resident memory that are anonymous (heap: tensors, arrays) and
    file-backed (mapped files: libraries, memory maps) from /proc (Linux)."""
    status = Path(f"/proc/{pid}/status").read_text()
    found = {kind: re.search(rf"^{kind}:\s+(\d+) kB", status, re.M) for kind in ("RssAnon", "RssFile")}
    # An exited process not yet reaped (a zombie) lists no memory: nothing to sample.
    return {kind: int(match.group(1)) * 1024 for kind, match in found.items() if match}


def peak_memory(argv: list[str], cwd: Path, env: dict[str, str]) -> dict[str, float]:
    """Run argv; its peak RSS alone (and its anonymous and file-backed parts, each at its own
    peak) and summed over its process tree, in GB, and its seconds."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    root = psutil.Process(proc.pid)
    own = tree = anon = mapped = 0
    while proc.poll() is None:
        try:
            members = [root, *root.children(recursive=True)]
            sizes = [m.memory_info().rss for m in members]
            kinds = resident_kinds(proc.pid)
        except (psutil.NoSuchProcess, FileNotFoundError):  # a process ended while being read
            continue
        own, tree = max(own, sizes[0]), max(tree, sum(sizes))
        anon, mapped = max(anon, kinds.get("RssAnon", 0)), max(mapped, kinds.get("RssFile", 0))
        time.sleep(0.2)
    output = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n{output[-3000:]}")
    return {"peak_rss_gb": round(own / GB, 2), "peak_rss_tree_gb": round(tree / GB, 2),
            "peak_anon_gb": round(anon / GB, 2), "peak_file_gb": round(mapped / GB, 2),
            "seconds": round(time.perf_counter() - started, 1)}


def bare_steps(model_name: str, batch_size: int, steps: int, overrides: list[str]) -> None:
    """The model's own arithmetic, for comparison: `steps` training steps of the full-size model
    at batch_size on random windows already in memory (the trainer's model preparation,
    optimizer and step), in this process; nothing else imported or held."""
    import torch

    from components.config import load_config
    from components.models import build_model
    from components.training.host_memory import map_large_allocations
    from components.training.trainer import make_optimizer, optimizer_step, prepare_model

    config = load_config(model_name, overrides)
    for key, value in {"num_classes": 3, "n_clusters": 3, "lyrics_dim": 64}.items():
        if hasattr(config.model, key):  # the architecture's own settings that follow the data
            setattr(config.model, key, value)
    if config.train.lean_host_memory:  # as the Trainer does
        map_large_allocations()
    model = prepare_model(build_model(model_name, config), torch.device("cpu"), config.train).train()
    optimizer = make_optimizer(model.parameters(), config.train, torch.device("cpu"))
    n_mels, frames = model.input_shape
    batch = {"mel": torch.randn(batch_size, 1, n_mels, frames),
             "genre": torch.zeros(batch_size, dtype=torch.long),
             "language": torch.zeros(batch_size, dtype=torch.long)}
    for _ in range(steps):
        terms = model.loss(batch, model(batch), config.train.kl_warmup_epochs)
        optimizer_step(terms["total"], optimizer, None, model.parameters(), config.train.grad_clip)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--songs-per-cell", type=int, default=15, help="x 12 language-genre cells")
    p.add_argument("--seconds", type=float, default=235.0, help="shortest song; the longest is +10 s")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--model", default="conv_vae")
    p.add_argument("--bare-steps", type=int, default=0,
                   help="internal: run this many bare training steps in this process and exit")
    p.add_argument("--folder", type=Path, default=None,
                   help="keep the corpus here and reuse it on the next run (default: a temp folder)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="training settings to measure")
    p.add_argument("--overrides", nargs="*", default=[],
                   help="config overrides of every step, e.g. features.n_mels=16 (a variant adds its own)")
    p.add_argument("--out", type=Path, default=RESULTS, help="results file (default: %(default)s)")
    args = p.parse_args(argv)
    if args.bare_steps:
        return bare_steps(args.model, 32, args.bare_steps, args.overrides)
    with tempfile.TemporaryDirectory(prefix="full-scale-") as tmp:
        folder = args.folder or Path(tmp)
        started = time.perf_counter()
        metadata = generate_demo_corpus(folder / "corpus", songs_per_cell=args.songs_per_cell,
                                        min_seconds=args.seconds, max_seconds=args.seconds + 10)
        generated = time.perf_counter() - started
        for stale in ("cache", "checkpoints", "mlruns"):  # a kept corpus, but a cold prepare
            shutil.rmtree(folder / stale, ignore_errors=True)
        (folder / "mlflow.db").unlink(missing_ok=True)
        env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT),
                            "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
        common = ["--data", str(metadata), "--data.cache_dir", str(folder / "cache"),
                  "--train.checkpoint_dir", str(folder / "checkpoints"),
                  "--overrides", " ".join(args.overrides)]
        prepare = peak_memory([sys.executable, "-m", "pipelines.prepare", "--model", args.model, *common],
                              folder, env)
        (cache,) = (folder / "cache").iterdir()
        manifest = json.loads((cache / "manifest.json").read_text())
        train, bare = {}, {}
        for variant in args.variants.split(","):
            overrides = VARIANTS[variant]
            train[variant] = peak_memory(
                [sys.executable, "-m", "pipelines.train", "--model", args.model, *common,
                 "--train.epochs", str(args.epochs),
                 *[part for item in overrides for part in (f"--{item.split('=')[0]}", item.split("=")[1])]],
                folder, env) | {"epochs": args.epochs}
            bare[variant] = peak_memory([sys.executable, "-m", "benchmarks.full_scale_memory", "--model",
                                         args.model, "--bare-steps", "3", "--overrides", *args.overrides,
                                         *overrides], folder, env)
        result = {
            "model": args.model, "songs": manifest["songs"], "windows": manifest["windows"],
            "window_hours": round(manifest["audio_seconds"] / 3600, 2),  # 30 s x windows (they overlap)
            "generate_corpus_s": round(generated, 1),
            "cache_gb_on_disk": round((cache / "windows.f16").stat().st_size / GB, 3),
            "prepare": prepare, "train": train,
            "bare_loop_3_steps_batch_32": bare,
            "cores": os.cpu_count(), "machine_ram_gb": round(psutil.virtual_memory().total / GB, 1),
        }
    if args.out.exists():  # variants not rerun keep their last numbers
        last = json.loads(args.out.read_text())
        for key in ("train", "bare_loop_3_steps_batch_32"):
            result[key] = last.get(key, {}) | result[key]
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
