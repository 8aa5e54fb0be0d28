"""The train entry point end to end on real audio with a real MLflow SQLite store, and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
import torch

from components.config import PROJECT_ROOT
from pipelines.train import main as train
from tests.conftest import tiny_overrides

# The declared protocol: one method and unit per headline score, chance level and interval beside
# it, on val (selects) and test (reports); other methods, the window unit and MFCC under own names.
# (Language has as many classes as the 4 test songs: no silhouette exists at song level.)
FULL = ("nmi", "ami", "ari", "silhouette_labels", "silhouette_clusters", "nmi_chance_mean",
        "nmi_chance_p95", "nmi_p_value", "beats_chance", "nmi_ci_low", "nmi_ci_high")
SPLITS = ("val", "test")
METRICS = [f"{split}/genre/{variant}{m}" for split in SPLITS for m in FULL for variant in ("", "mfcc/")]
METRICS += [f"{split}/genre/{variant}/{m}" for split in SPLITS
            for variant in ("agglomerative", "gmm", "window")
            for m in ("nmi", "ami", "ari", "nmi_chance_p95", "nmi_p_value", "beats_chance")]
METRICS += [f"{split}/language/{m}" for split in ("val", "test") for m in ("nmi", "ami", "nmi_p_value")]


def _args(tmp_path, corpus, *extra):
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", *extra)
    return ["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)]


def test_train_logs_a_complete_run_with_a_loadable_model(tmp_path, corpus, mlflow_store):
    run_id = train(_args(tmp_path, corpus))
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    for name in ["train/loss", "val/loss", "val/recon", "val/kl", *METRICS]:
        assert name in run.data.metrics, f"missing metric {name}"
    # Learning made visible: reconstruction per real (not padded) feature, 1.0 = predicting the
    # mean; its value before training; the same architecture untrained, mean of 3 initialisations.
    metrics = run.data.metrics
    assert metrics["val/recon_per_feature"] == pytest.approx(metrics["val/recon"] / (16 * 172))
    for name in ("train/recon_per_feature_init", "val/recon_per_feature_init"):
        (initial,) = mlflow.MlflowClient().get_metric_history(run_id, name)
        assert initial.step == 0 and initial.value > 0
    assert {"test/genre/untrained/nmi", "test/genre/untrained/nmi_std",
            "test/language/untrained/ami"} <= set(metrics)
    history = mlflow.MlflowClient().get_metric_history(run_id, "val/loss")
    assert sorted(m.step for m in history) == [0, 1]
    peaks = sorted(mlflow.MlflowClient().get_metric_history(run_id, "memory/process_peak_rss_mb"),
                   key=lambda m: m.step)
    assert [m.step for m in peaks] == [0, 1, 2]  # each epoch, then after evaluation and logging
    assert 100 < peaks[0].value <= peaks[-1].value  # a high-water mark, in MB
    params = run.data.params
    assert params["train.lr"] == "0.001" and params["model.name"] == "conv_vae"
    assert int(params["model.parameter_count"]) > 0 and "data.cache_digest" in params
    assert {"device", "config_hash", "precision"} <= set(run.data.tags)
    # what the auto settings chose on this CPU: NCHW, eager, windows read from the cache
    chosen = [run.data.tags[k] for k in ("channels_last", "compile", "data_on_device")]
    assert chosen == ["False", "eager", "False"]
    assert {"train/seconds/steps", "train/seconds/validation", "train/seconds/checkpoint"} <= set(metrics)
    assert not any(name.startswith(("genre/", "language/", "baseline/")) for name in run.data.metrics)
    assert [params[f"data.{split}_songs"] for split in ("train", "val", "test")] == ["4", "4", "4"]
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == f"{params['data.cache_digest']}-{params['data.split_key']}"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id, "plots")}
    assert {"plots/latent_projection_test.png", "plots/reconstruction.png"} <= artifacts

    model_uri = next(iter(mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'",
                                                      output_format="list"))).model_uri
    served = mlflow.pyfunc.load_model(model_uri)  # its API: tests/test_embedding_model.py
    mel = (torch.randn(3, 1, 16, 173) * 10 - 40).numpy()
    out = served.predict({"mel": mel})
    assert out["embedding"].shape == (3, 8) and out["cluster_genre"].shape == (3,)
    assert np.allclose(served.predict(mel)["embedding"], out["embedding"], atol=1e-5)


@pytest.mark.slow
def test_interrupted_run_resumes_in_the_same_mlflow_run(tmp_path, corpus, mlflow_store):
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    args = _args(tmp_path, corpus, "train.epochs=4", "train.early_stopping_patience=10")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.train", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "checkpoints"
    deadline = time.time() + 240
    while not list(checkpoints.glob("*/last.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (last,) = checkpoints.glob("*/last.pt")
    run_id = last.parent.name
    assert mlflow.get_run(run_id).info.status == "RUNNING"  # what a kill leaves behind
    epoch_at_kill = torch.load(last, weights_only=True)["state"]["epoch"]
    assert epoch_at_kill < 3, "the run finished before it could be interrupted"

    assert train([*args, "--resume", run_id]) == run_id
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, "train/loss")]
    assert sorted(steps) == [0, 1, 2, 3], "each epoch logged exactly once across the interruption"
    assert run.data.metrics["train/epochs_run"] == 4


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused(tmp_path, corpus, mlflow_store):
    from components.config import ConfigError
    run_id = train(_args(tmp_path, corpus, "train.epochs=1"))
    with pytest.raises(ConfigError, match="different config"):
        train([*_args(tmp_path, corpus, "train.epochs=1", "model.latent_dim=4"), "--resume", run_id])


@pytest.mark.slow
def test_a_failure_in_evaluation_keeps_the_trained_model(tmp_path, corpus, mlflow_store, monkeypatch):
    import pipelines.training_run as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("evaluation broke")
    working = pipeline.evaluate
    monkeypatch.setattr(pipeline, "evaluate", broken)
    with pytest.raises(RuntimeError, match="evaluation broke"):
        train(_args(tmp_path, corpus, "train.epochs=1"))
    run = mlflow.search_runs(output_format="list")[0]
    assert run.info.status == "FAILED" and run.data.metrics["train/best_epoch"] == 0
    served = mlflow.pyfunc.load_model(run.data.tags["model_uri"])  # the trained weights, logged
    assert served.metadata is not None

    monkeypatch.setattr(pipeline, "evaluate", working)  # the same config resumes into the missing steps
    assert train([*_args(tmp_path, corpus, "train.epochs=1"), "--resume", run.info.run_id]) == run.info.run_id
    resumed = mlflow.get_run(run.info.run_id)
    assert resumed.info.status == "FINISHED" and "test/genre/nmi" in resumed.data.metrics
    assert resumed.data.tags["model_uri"] == run.data.tags["model_uri"]  # not trained or logged again
    assert len(mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'",
                                           output_format="list")) == 1


def test_a_one_dimensional_latent_or_a_single_point_still_draws_its_projection():
    from components.evaluation.plots import latent_projection
    labels = {"genre": np.array(["pop", "rock", "pop"])}
    for embeddings in (np.random.default_rng(0).normal(size=(3, 1)), np.ones((1, 4))):
        figure = latent_projection(embeddings, {k: v[: len(embeddings)] for k, v in labels.items()}, "t")
        assert len(figure.axes[0].collections) == len(set(labels["genre"][: len(embeddings)]))


def test_batch_larger_than_data_is_a_clear_error(tmp_path, corpus, mlflow_store):
    from components.config import ConfigError
    with pytest.raises(ConfigError, match="train.batch_size=100000 is larger"):
        train(_args(tmp_path, corpus, "train.batch_size=100000"))


@pytest.mark.slow
def test_cvae_own_label_score_never_appears_under_a_headline_name(tmp_path, corpus, mlflow_store, capsys):
    args = _args(tmp_path, corpus, "train.epochs=1")
    args[1] = "cvae_genre"
    run = mlflow.get_run(train(args))
    assert run.info.status == "FINISHED"
    assert run.data.tags["label_conditioned"] == "genre"
    assert run.data.params["model.num_classes"] == "3"  # from the data's genre vocabulary
    metrics = run.data.metrics
    assert "test/genre_conditioned/nmi" in metrics and "test/language/nmi" in metrics
    # Under genre's own names only the MFCC baseline, which never saw a label.
    model_genre = [name for name in metrics if name.split("/")[1:2] == ["genre"]
                   and name.split("/")[2] != "mfcc"]
    assert model_genre == [] and "val/genre_nmi" not in metrics
    printed = capsys.readouterr().out
    assert "test genre: not an unsupervised result" in printed and "test genre (songs" not in printed


class _Killed(BaseException):
    """Stands for SIGKILL after an epoch was logged: nothing in the process runs after it."""


@pytest.mark.slow
def test_epochs_a_killed_run_trains_again_are_logged_once(tmp_path, corpus, mlflow_store, monkeypatch):
    import pipelines.training_run as pipeline
    from components.config import load_config
    from components.tracking import mlflow_runs as tracking
    from components.training import checkpoint

    flush = checkpoint.Writer.flush
    monkeypatch.setattr(checkpoint.Writer, "flush", lambda self, *a, **k: (
        None if isinstance(sys.exc_info()[1], _Killed) else flush(self, *a, **k)))  # no flush: a kill

    def killed_after_epoch_2(metrics, epoch):
        if epoch == 2:
            raise _Killed
    extra = ("train.epochs=4", "train.early_stopping_patience=10", "train.checkpoint_every=2")
    config = load_config("conv_vae", [*tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", *extra),
                                      f"data.source={corpus}"])
    with pytest.raises(_Killed), tracking.run(config.tracking, run_name="killed"):  # as main() runs it
        run_id = tracking.active_run_id()
        pipeline.train(config, on_epoch=killed_after_epoch_2)
    args = _args(tmp_path, corpus, *extra)
    last = tmp_path / "checkpoints" / run_id / checkpoint.LAST
    assert checkpoint.load(last)["state"].epoch == 1  # epoch 2 was logged, never written

    assert train([*args, "--resume", run_id]) == run_id
    for name in ("train/loss", "val/loss", "val/recon_per_feature"):
        steps = [m.step for m in mlflow.MlflowClient().get_metric_history(run_id, name)]
        assert sorted(steps) == [0, 1, 2, 3], name


def test_a_checkpoint_from_before_new_training_keys_resumes_as_it_trained(tmp_path, capsys):
    from components.config import load_config
    from components.training import checkpoint
    from components.training.resume import config_for_resume

    config = load_config("basic_vae", tiny_overrides(tmp_path))
    old = config.to_dict()
    for key in ("lr_fan_in_reference", "precise_bn_batches", "checkpoint_every"):
        del old["train"][key]
    old["model"]["fusion"] = "attention"  # every architecture's config held every model key then
    checkpoint.atomic_save({"config": old, "state": {}}, tmp_path / checkpoint.LAST)
    resumed = config_for_resume(config, tmp_path)
    assert resumed.train.lr_fan_in_reference is None and resumed.train.precise_bn_batches == 0
    assert resumed.train.checkpoint_every == config.train.checkpoint_every
    assert not hasattr(resumed.model, "fusion") and resumed.to_dict().keys() == config.to_dict().keys()
    assert "predates the settings" in capsys.readouterr().err


def test_resuming_a_run_id_the_store_does_not_hold_names_the_store_and_the_fix(tmp_path, corpus,
                                                                               mlflow_store):
    from components.tracking.mlflow_runs import TrackingError

    with pytest.raises(TrackingError, match="no run 'deadbeef' to resume in the tracking store sqlite:///"):
        train([*_args(tmp_path, corpus), "--resume", "deadbeef"])
    assert not (tmp_path / "cache").exists()
