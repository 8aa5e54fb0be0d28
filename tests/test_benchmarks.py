"""Every benchmark's own main at its smallest setting (tiny shapes, one model, one epoch, a few
trials), its results file in tmp_path: each still runs on today's code and writes the fields that
README.md and benchmarks/README.md quote. Nothing here times anything or checks a measured value."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    architectures,
    cluster_scaling,
    config_check,
    cpu_precision,
    dashboard_screenshots,
    full_scale_memory,
    gpu,
    io_and_allocator,
    learning,
    prepare_speed,
    protocol,
    recipe,
    startup,
    step_throughput,
    trainer_overhead,
    tuning_efficiency,
)
from components.config import PROJECT_ROOT
from components.data.dataset import TASKS
from corpora.demo_corpus import generate_demo_corpus
from tests import servers
from tests.conftest import TINY, tiny_overrides

pytestmark = pytest.mark.slow  # end-to-end runs and subprocesses: make test, not make test-fast

BASIC = "model.hidden_dims=[16,8]"  # basic_vae's FC widths at tiny size (conftest's tiny_config)
CONV = "model.hidden_dims=[8,16]"
# The protocol's resampling and baselines cut down (what is tested is that the fields are written).
QUICK = ("eval.permutations=20", "eval.bootstrap=20", "eval.untrained_inits=1")


@pytest.fixture(autouse=True)
def _measured_results_untouched():
    """A smoke test writes its results into tmp_path only: benchmarks/results/ keeps the measurements."""
    results = PROJECT_ROOT / "benchmarks" / "results"

    def stamps() -> dict[Path, int]:
        return {path: path.stat().st_mtime_ns for path in results.rglob("*") if path.is_file()}

    before = stamps()
    yield
    assert stamps() == before


@pytest.fixture(scope="module")
def short_corpus(tmp_path_factory) -> Path:
    """12 songs (one per language x genre) of 6-8 s: the 2 s windows need no more, and decoding
    conftest's 31-35 s songs would be most of a prepare benchmark's time."""
    return generate_demo_corpus(tmp_path_factory.mktemp("short") / "demo", songs_per_cell=1,
                                min_seconds=6, max_seconds=8)


def read(path: Path) -> dict[str, Any]:
    assert path.exists(), f"the benchmark wrote no {path.name}"
    return json.loads(path.read_text())


def has(record: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if key not in record]
    assert not missing, f"missing {missing} in {sorted(record)}"


def test_prepare_speed(tmp_path, short_corpus):
    out = tmp_path / "prepare_speed.json"
    prepare_speed.main(["--overrides", *tiny_overrides(tmp_path), f"data.source={short_corpus}",
                        "--out", str(out)])
    result = read(out)
    has(result, "songs", "windows", "audio_minutes", "cold_prepare_s", "warm_prepare_s",
        "single_process_decode_mel_s", "realtime_factor_per_core", "plain_librosa_windows",
        "audio_min_per_s_plain_librosa", "audio_min_per_s_single_process", "audio_min_per_s_cold_prepare",
        "audio_min_per_s_warm_prepare", "cache_mb")
    assert result["songs"] == 12 and result["windows"] > 0


def test_trainer_overhead(tmp_path, mlflow_store):
    out = tmp_path / "trainer_overhead.json"
    trainer_overhead.main(["--models", "basic_vae", "--songs-per-cell", "1", "--seconds", "6",
                           "--epochs", "1", "--out", str(out), "--overrides", *TINY, BASIC])
    (model,) = read(out)["models"]
    has(model, "model", "precision", "batch", "train_windows", "val_windows", "epochs", "checkpoint_every",
        "bare_train_only_s", "bare_samples_per_s", "bare_runs_s", "bare_default_adam_samples_per_s",
        "trainer")
    assert model["checkpoint_every"] == {"before": 1, "inline": "auto", "background": "auto"}
    assert set(model["trainer"]) == set(trainer_overhead.VARIANTS)
    for variant in model["trainer"].values():
        has(variant, "train_phase_over_bare", "over_bare_default_adam",
            "fit_without_validation_over_train_only_bare", "fit_over_bare", "per_epoch_s")
        has(variant["per_epoch_s"], "train_phase", "batchnorm", "validation", "scoring", "checkpoint",
            "logging", "fit")


def test_step_throughput(tmp_path):
    out = tmp_path / "step_throughput.json"
    step_throughput.main(["--models", "basic_vae", "--variants", "eager,channels_last", "--steps", "1",
                          "--batch", "2", "--out", str(out), "--overrides", *TINY, BASIC])
    result = read(out)
    has(result, "device", "batch", "steps", "rows")
    assert [row["variant"] for row in result["rows"]] == ["eager", "channels_last"]
    for row in result["rows"]:
        has(row, "model", "input", "parameters", "samples_per_s", "step_s")
        assert row["input"] == [16, 173]


def test_io_and_allocator(tmp_path):
    out = tmp_path / "io_and_allocator.json"
    io_and_allocator.main(["--steps", "2", "--rounds", "1", "--checkpoint-mb", "1", "--out", str(out),
                           "--overrides", *TINY, CONV])
    result = read(out)
    has(result["normalisation"], "numpy_cast_then_out_of_place_ms", "torch_cast_and_in_place_ms")
    has(result["checkpoint_write_1mb"], "with_crc32_s", "without_crc32_s")
    assert set(result["training_steps"]) == {"default", "lean_host_memory"}
    for runs in result["training_steps"].values():
        (run,) = runs
        has(run, "step_s", "peak_rss_gb")


def test_startup(tmp_path, short_corpus):
    out = tmp_path / "startup.json"
    startup.main(["--model", "basic_vae", "--repeats", "1", "--data", str(short_corpus), "--out", str(out),
                  "--overrides", *tiny_overrides(tmp_path, BASIC)])
    result = read(out)
    (end_to_end,) = result["end_to_end"]
    has(end_to_end, "mlflow_run_cli_s", "train_process_to_first_step_s", "mlflow_run_to_first_step_s")
    (phases,) = result["phases"]
    has(phases, "import_pipelines_train_s", "tracking_connect_and_start_run_s", "feature_cache_check_s",
        "build_model_and_trainer_s", "first_batch_s", "first_training_step_s")


def test_full_scale_memory(tmp_path):
    """The report's scale is what this benchmark is for; its smallest honest setting is the same
    three processes (prepare, train, bare loop) on 12 short songs at tiny shapes, one variant."""
    out = tmp_path / "full_scale_memory.json"
    full_scale_memory.main(["--songs-per-cell", "1", "--seconds", "6", "--model", "basic_vae",
                            "--variants", "default", "--out", str(out), "--overrides", *TINY, BASIC, *QUICK])
    result = read(out)
    has(result, "songs", "windows", "cache_gb_on_disk", "prepare", "train", "bare_loop_3_steps_batch_32")
    memory = ("peak_rss_gb", "peak_rss_tree_gb", "peak_anon_gb", "peak_file_gb", "seconds")
    has(result["prepare"], *memory)
    has(result["train"]["default"], *memory, "epochs")
    has(result["bare_loop_3_steps_batch_32"]["default"], *memory)


def test_gpu(tmp_path):
    """Its own --tiny setting, on whatever device this is (the CPU here, where AMP resolves to
    float32); the end-to-end section needs a GPU machine's command and is left out."""
    written = gpu.main(["--tiny", "--models", "conv_vae", "--steps", "1", "--epochs", "2",
                        "--sections", "steps,fit,compile", "--out", str(tmp_path)])
    assert written.parent == tmp_path
    result = read(written)
    model = result["models"]["conv_vae"]
    errors = {key: value for key, value in model.items() if key.endswith("_error")}
    assert not errors, errors  # the benchmark records an architecture's failure instead of raising
    has(model, "parameters", "steps", "fit", "compile")
    for variant in ("fp32", "amp", "amp_channels_last", "fp16_scaler"):
        has(model["steps"][variant], "samples_per_s", "peak_gb", "good_steps")
    has(model["fit"], "fit_over_bare", "epoch_over_bare_epoch", "parts_s", "peak_gb")
    assert model["fit"]["epoch_over_bare_epoch"] is not None  # an epoch after the first
    has(model["compile"], "samples_per_s", "setup_and_warm_up_s")


def test_architectures(tmp_path, short_corpus, mlflow_store):
    out = tmp_path / "architectures.json"
    architectures.main(["--epochs", "1", "--models", "basic_vae", "--data", str(short_corpus),
                        "--out", str(out), "--overrides", " ".join(tiny_overrides(tmp_path, BASIC, *QUICK))])
    result = read(out)
    assert set(result["epoch_seconds"]) == {"basic_vae"}
    has(result["memory"]["basic_vae"], "parameters", "weights_grads_adam_gb", "activations_fp32_gb",
        "total_fp32_gb", "total_amp_gb")
    rows = {row["model"]: row for row in result["comparison"]}
    has(rows, "basic_vae", "MFCC statistics")
    has(rows["basic_vae"], "genre NMI", "language NMI", "parameters", "epochs")


def test_cpu_precision(tmp_path):
    out = tmp_path / "cpu_precision.json"
    cpu_precision.main(["--batch", "2", "--steps", "1", "--out", str(out), "--overrides", *TINY, CONV])
    has(read(out), "batch", "fp32_step_s", "bf16_autocast_step_s", "bf16_over_fp32", "onednn_bf16_kernels")


def test_tuning_efficiency(tmp_path, short_corpus):
    out = tmp_path / "tuning_efficiency.json"
    overrides = tiny_overrides(tmp_path, BASIC, f"data.source={short_corpus}", *QUICK)
    tuning_efficiency.main(["--trials", "1", "--epochs", "1", "--out", str(out),
                            "--overrides", " ".join(overrides)])
    results = read(out)["results"]
    assert set(results) == set(tuning_efficiency.STRATEGIES)
    for strategy in results.values():
        has(strategy, "trials", "pruned", "epochs_trained", "wall_seconds", "best_nmi")
        assert strategy["trials"] == 1


def test_config_check(tmp_path):
    """main itself fails when a typo is not refused with a one-line error."""
    out = tmp_path / "config_check.json"
    config_check.main(["--repeats", "1", "--out", str(out)])
    result = read(out)
    assert set(result["median_seconds"]) == set(config_check.COMMANDS)
    assert set(result["over_import_torch"]) == set(config_check.COMMANDS)


def test_cluster_scaling(tmp_path):
    """After the warm-up, one setup: each is at least one tune process of its own (Ray's, two trials
    in a Ray instance), so all three would take minutes. The others run the same code with more
    processes or tune.workers=2, whose Ray path tests/test_cluster_workers.py runs."""
    out = tmp_path / "cluster_scaling.json"
    cluster_scaling.main(["--trials", "1", "--epochs", "1", "--setups", "plain1", "--seconds", "6", "--out",
                          str(out), "--overrides", " ".join(QUICK)])
    result = read(out)
    has(result, "setups", "speedup_2_workers_plain", "speedup_2_workers_ray",
        "ray_overhead_seconds_per_trial")
    (setup,) = result["setups"].values()
    has(setup, "trials_finished", "wall_seconds", "trials_per_minute")
    assert setup["trials_finished"] >= 1


def test_protocol(tmp_path, short_corpus, mlflow_store):
    out = tmp_path / "protocol.json"
    overrides = " ".join(tiny_overrides(tmp_path, BASIC, f"data.source={short_corpus}", *QUICK))
    protocol.main(["--epochs", "1", "--models", "basic_vae", "--out", str(out), "--overrides", overrides])
    first = read(out)
    protocol.main(["--rescore", "--out", str(out)])  # the same run scored again from its logged model
    result = read(out)
    assert result["runs"] == first["runs"] and set(result["runs"]) == {"basic_vae"}
    has(result["trained_at_commit"], "basic_vae")
    assert [(row["model"], row["task"]) for row in result["rows"]] == [
        *(("basic_vae", task) for task in TASKS), *(("MFCC statistics", task) for task in TASKS)]
    for row in result["rows"]:
        has(row, "old_nmi", "old_method", "val_window_kmeans_nmi", "val_window_chance_mean",
            "val_window_chance_p95", "test_nmi", "test_nmi_ci_low", "test_nmi_ci_high",
            "test_nmi_chance_mean", "test_nmi_chance_p95", "test_nmi_p_value", "label_conditioned")
    (run,) = result["runs_logged"]
    has(run, "best_epoch", "epochs", "val_recon_per_feature_init", "val_recon_per_feature_best",
        *(f"{task}/{key}" for task in TASKS for key in ("nmi", "nmi_p_value", "untrained/nmi",
                                                        "untrained/nmi_std", "ari", "silhouette_labels")))


def test_learning(tmp_path, short_corpus, mlflow_store):
    out = tmp_path / "learning.json"
    overrides = " ".join(tiny_overrides(tmp_path, BASIC, *QUICK))
    learning.main(["--corpora", str(short_corpus), "--models", "basic_vae", "--epochs", "1",
                   "--out", str(out), "--overrides", overrides])
    learning.main(["--rescore", "--out", str(out)])  # the table again from the same run
    result = read(out)
    (row,) = result["rows"]
    has(result["trained_at_commit"], row["run"])
    has(row, "corpus", "model", "best_epoch", "epochs", "val_recon_per_feature_init",
        "val_recon_per_feature_best")
    for task in TASKS:
        has(row, f"{task}/label_conditioned", f"{task}/untrained/nmi_std",
            *(f"{task}/{variant}/{key}" for variant in ("trained", "untrained", "mfcc")
              for key in learning.SCORES))
        assert learning.verdict(row, task) != "unscored"


def test_recipe(tmp_path, short_corpus):
    out = tmp_path / "recipe.jsonl"
    overrides = tiny_overrides(tmp_path, BASIC, f"data.source={short_corpus}")
    recipe.main(["--out", str(out), "fit", "basic_vae", "smoke", *overrides, "train.epochs=1"])
    recipe.main(["--out", str(out), "steps", "basic_vae", "smoke", *overrides])
    fit, steps = (json.loads(line) for line in out.read_text().splitlines())
    for line, mode in ((fit, "fit"), (steps, "steps")):
        assert (line["mode"], line["model"], line["tag"]) == (mode, "basic_vae", "smoke")
    has(fit, "train_windows", "best_epoch", "epochs")
    (epoch,) = fit["epochs"]
    has(epoch, "val/recon_per_feature", "val/recon_per_feature_init", "val/kl", "train/kl")
    assert steps["steps"]
    has(steps["steps"][0], "train_abs_mu", "train_max_logvar", "train_kl", "eval_abs_mu",
        "eval_recon_per_feature")


def test_dashboard_screenshots(tmp_path, short_corpus, mlflow_store):
    if servers.chromium_binary() is None:
        reason = "chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    shots = tmp_path / "screenshots"
    overrides = " ".join(tiny_overrides(tmp_path, BASIC, f"data.source={short_corpus}", *QUICK))
    dashboard_screenshots.main(["--trials", "2", "--epochs", "1", "--out", str(shots),
                                "--overrides", overrides])
    for name in ("mlflow_compare_runs.png", "optuna_dashboard_study.png"):
        assert (shots / name).stat().st_size > 0
