"""The evaluate entry point: a registered model scored under the protocol as its own run."""

from __future__ import annotations

import mlflow
import pytest
from mlflow import MlflowClient

from components.config import ConfigError
from components.tracking.registry import promote
from corpora.demo_corpus import generate_demo_corpus
from pipelines.evaluate import main as evaluate
from pipelines.train import main as train
from tests.conftest import tiny_overrides


@pytest.mark.slow
def test_champion_is_scored_on_test_songs_and_on_an_unseen_corpus(tmp_path, corpus, mlflow_store, capsys):
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", "train.epochs=1")
    trained = train(["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    promote(trained, "genre")
    trained_metrics = mlflow.get_run(trained).data.metrics

    run_id = evaluate(["--model-uri", "models:/conv_vae@champion"])
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["source_run_id"] == trained
    assert run.data.tags["evaluation.same_corpus_as_training"] == "True"
    # The same test songs, split as in training, scored through the served model: the same scores.
    for name in ("test/genre/nmi", "test/genre/nmi_p_value", "test/language/ami", "test/genre/mfcc/nmi"):
        assert run.data.metrics[name] == pytest.approx(trained_metrics[name], abs=1e-6)
    assert not any(name.startswith("val/") for name in run.data.metrics)  # only test songs are read
    model_id = mlflow.get_run(trained).data.tags["model_uri"].removeprefix("models:/")
    assert [m.model_id for m in run.inputs.model_inputs] == [model_id]  # linked to the logged model
    version = MlflowClient().get_model_version("conv_vae", "1")
    assert version.tags["evaluation_run_id"] == run_id
    assert float(version.tags["test/genre/nmi"]) == pytest.approx(trained_metrics["test/genre/nmi"])
    assert "test genre (songs, kmeans): model NMI" in capsys.readouterr().out

    other = generate_demo_corpus(tmp_path / "other", songs_per_cell=1, seed=7, min_seconds=6, max_seconds=8)
    unseen = mlflow.get_run(evaluate(["--model-uri", "models:/conv_vae/1", "--data", str(other),
                                      "--split", "all"]))
    assert unseen.data.params["data.test_songs"] == "12"  # every song of it
    assert unseen.data.tags["evaluation.same_corpus_as_training"] == "False"
    tags = MlflowClient().get_model_version("conv_vae", "1").tags
    prefixed = [key for key in tags if key.startswith("corpus-") and key.endswith("/test/genre/nmi")]
    assert len(prefixed) == 1 and tags["test/genre/nmi"] == version.tags["test/genre/nmi"]

    with pytest.raises(ConfigError, match="only eval"):
        evaluate(["--model-uri", "models:/conv_vae@champion", "--overrides", "model.latent_dim=4"])
    with pytest.raises(ConfigError, match="eval.method='kmean' is not one of"):
        evaluate(["--model-uri", "models:/conv_vae@champion", "--overrides", "eval.method=kmean"])
