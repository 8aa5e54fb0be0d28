"""Promotion in the real MLflow Model Registry (SQLite): champion rules, rollback, CVAE rule, lookups."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient

from components.config import PROJECT_ROOT
from components.tracking import registry
from components.tracking.registry import RegistryError, champions, promote, rollback, task_metric
from pipelines import champions as champions_cli
from pipelines import promote as promote_cli
from pipelines.arguments import run_cli
from tests.conftest import tiny_overrides


def training_run(model: str = "conv_vae", genre: float | None = 0.4, language: float = 0.2,
                 tags: dict[str, str] | None = None, with_model: bool = True, best_epoch: int = 2) -> str:
    """A finished run shaped like pipelines.train's: headline scores on val (genre, language) and on
    test (their opposites, 1 - value: a promotion that read test scores would rank runs backwards),
    the `model` tag and a real logged pytorch model whose bias holds `genre`, so a loaded champion
    shows which run it is. A conditioned label is scored under <label>_conditioned, as train does."""
    conditioned = (tags or {}).get("label_conditioned")
    metrics = {"train/best_epoch": best_epoch, "train/epochs_run": best_epoch + 1}
    for label, value in (("genre", genre), ("language", language)):
        if value is None:  # unscored: evaluation logs the reason as a tag instead (tags=...)
            continue
        name = f"{label}_conditioned" if label == conditioned else label
        for split, score in (("val", value), ("test", 1 - value)):
            metrics |= {f"{split}/{name}/nmi": score, f"{split}/{name}/ari": score / 2,
                        f"{split}/{name}/silhouette_labels": 0.3, f"{split}/{name}/nmi_p_value": 0.01,
                        f"{split}/{name}/gmm/nmi": score}
    with mlflow.start_run() as run:
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"model": model, **(tags or {})})
        if with_model:
            layer = torch.nn.Linear(2, 2)
            torch.nn.init.constant_(layer.bias, genre or 0.0)
            info = mlflow.pytorch.log_model(layer, name="model", serialization_format="pickle",
                                            pip_requirements=["torch"])
            mlflow.set_tag("model_uri", info.model_uri)
    return run.info.run_id


def aliases(name: str) -> dict[str, int]:
    return {k: int(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def champion_bias(name: str) -> float:
    return float(mlflow.pytorch.load_model(f"models:/{name}@champion").bias.detach()[0])


def test_task_metric_is_the_nmi_of_the_task_and_their_mean_for_both():
    metrics = {"val/genre/nmi": 0.5, "val/language/nmi": 0.2, "val/genre/ari": 0.9,
               "test/genre/nmi": 0.1, "test/language/nmi": 0.9}  # test scores never judge
    assert task_metric("genre", metrics) == 0.5
    assert task_metric("language", metrics) == 0.2
    assert task_metric("both", metrics) == pytest.approx(0.35)
    assert task_metric("both", {"val/genre/nmi": "0.5", "val/language/nmi": "0.3"}) == pytest.approx(0.4)
    assert task_metric("language", {"val/genre/nmi": 0.5, "test/language/nmi": 0.5}) is None
    with pytest.raises(RegistryError, match="unknown task 'mood'"):
        task_metric("mood", metrics)


def test_champion_moves_only_when_strictly_better_and_the_old_one_becomes_previous(mlflow_store):
    first = promote(training_run(genre=0.4), "genre")
    assert (first.version, first.promoted, first.previous_champion) == (1, True, None)
    assert aliases("conv_vae") == {"champion": 1}

    worse = promote(training_run(genre=0.3), "genre")
    assert (worse.version, worse.promoted) == (2, False)
    assert aliases("conv_vae") == {"champion": 1}

    better = promote(training_run(genre=0.5), "genre")
    assert (better.version, better.promoted, better.previous_champion) == (3, True, 1)
    assert aliases("conv_vae") == {"champion": 3, "previous_champion": 1}
    assert champion_bias("conv_vae") == pytest.approx(0.5)  # the alias serves the new model
    served = mlflow.pyfunc.load_model("models:/conv_vae@champion").predict(np.zeros((1, 2), np.float32))
    assert np.allclose(served, 0.5)


def test_a_tie_keeps_the_incumbent(mlflow_store):
    promote(training_run(genre=0.4), "genre")
    tie = promote(training_run(genre=0.4), "genre")
    assert not tie.promoted and "ties keep the incumbent" in tie.reason
    assert aliases("conv_vae") == {"champion": 1}


def test_rollback_restores_the_previous_champion_once(mlflow_store):
    promote(training_run(genre=0.4), "genre")
    promote(training_run(genre=0.6), "genre")
    assert champion_bias("conv_vae") == pytest.approx(0.6)
    back = rollback("conv_vae")
    assert (back.version, back.previous_champion) == (1, 2)
    assert aliases("conv_vae") == {"champion": 1}
    assert champion_bias("conv_vae") == pytest.approx(0.4)
    with pytest.raises(RegistryError, match="no previous_champion alias"):
        rollback("conv_vae")
    with pytest.raises(RegistryError, match="no registered model 'vade'"):
        rollback("vade")


def test_a_cvae_never_wins_its_own_label_but_can_win_the_other(mlflow_store):
    cvae = training_run("cvae_genre", genre=1.0, language=0.2, tags={"label_conditioned": "genre"})
    refused = promote(cvae, "genre")
    assert not refused.promoted and "--task language" in refused.reason
    assert "conditioned on genre" in refused.reason
    assert aliases("cvae_genre") == {}
    version = MlflowClient().get_model_version("cvae_genre", str(refused.version))
    assert version.tags["label_conditioned"] == "genre"  # registered, with the reason on record

    both = promote(cvae, "both")
    assert not both.promoted and "averages in its genre NMI" in both.reason
    assert aliases("cvae_genre") == {}

    language = promote(cvae, "language")
    assert language.promoted and language.version == refused.version
    assert aliases("cvae_genre") == {"champion": 1}
    # A stronger genre score still changes nothing for task genre.
    assert not promote(training_run("cvae_genre", genre=1.0, language=0.1,
                                    tags={"label_conditioned": "genre"}), "genre").promoted
    assert aliases("cvae_genre") == {"champion": 1}


def test_an_incumbent_from_another_task_is_judged_on_the_new_task(mlflow_store):
    promote(training_run(genre=0.6, language=0.2), "genre")
    # Lower genre, higher language: wins a language promotion against the genre champion's tags.
    switched = promote(training_run(genre=0.3, language=0.25), "language")
    assert switched.promoted and "beats version 1's 0.2000" in switched.reason
    # both = mean of the NMIs: (0.3 + 0.25) / 2 = 0.275 < (0.5 + 0.1) / 2 = 0.3.
    assert promote(training_run(genre=0.5, language=0.1), "both").promoted
    assert aliases("conv_vae") == {"champion": 3, "previous_champion": 2}
    (listed,) = champions()
    assert (listed.version, listed.task) == (3, "both")


def test_an_incumbents_label_conditioned_score_does_not_defend_its_title(mlflow_store):
    # Same architecture, one run conditioned on language (e.g. a condition_on override): it won on
    # genre; on task language its perfect score is not unsupervised, so any real score beats it.
    promote(training_run(genre=0.6, language=1.0, tags={"label_conditioned": "language"}), "genre")
    switched = promote(training_run(genre=0.3, language=0.1), "language")
    assert switched.promoted and "version 1, which has no val/language/nmi that counts" in switched.reason
    assert aliases("conv_vae") == {"champion": 2, "previous_champion": 1}


def test_promoting_the_same_run_twice_reuses_its_version(mlflow_store):
    champion_run, other_run = training_run(genre=0.5), training_run(genre=0.1)
    assert promote(champion_run, "genre").version == 1
    again = promote(champion_run, "genre")
    assert (again.version, again.promoted) == (1, False) and "already the champion" in again.reason
    assert promote(other_run, "genre", study="sweep-1").version == 2
    assert promote(other_run, "genre", study="sweep-1").version == 2
    versions = MlflowClient().search_model_versions("name = 'conv_vae'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert MlflowClient().get_model_version("conv_vae", "2").tags["study"] == "sweep-1"


def test_version_tags_carry_the_metrics_run_and_the_runs_study(mlflow_store):
    run_id = training_run(genre=0.4, tags={"optuna.study_name": "conv_vae-tpe",
                                           "optuna.trial_number": "7"})
    promoted = promote(run_id, "language")
    tags = MlflowClient().get_model_version("conv_vae", str(promoted.version)).tags
    assert tags["val/genre/nmi"] == "0.4" and tags["val/language/ari"] == "0.1"
    assert tags["test/genre/nmi"] == "0.6" and tags["test/genre/nmi_p_value"] == "0.01"
    assert {"test/genre/silhouette_labels", "test/language/nmi", "val/genre/ari"} <= set(tags)
    assert "test/genre/gmm/nmi" not in tags  # other methods stay on the run
    assert (tags["run_id"], tags["task"], tags["study"], tags["trial_number"]) == (
        run_id, "language", "conv_vae-tpe", "7")


def test_runs_without_a_model_or_unfinished_are_refused_with_the_fix(mlflow_store):
    no_model = training_run(with_model=False)
    with pytest.raises(RegistryError, match=f"run {no_model} has no logged model.*train it again"):
        promote(no_model, "genre")
    client = MlflowClient()
    running = client.create_run("0", tags={"model": "conv_vae"}).info.run_id
    with pytest.raises(RegistryError, match=f"run {running} is RUNNING.*--resume {running}"):
        promote(running, "genre")
    with pytest.raises(RegistryError, match="no run 'f00'"):
        promote("f00", "genre")
    untrained = training_run(best_epoch=-1)  # what train.epochs=0 logged: scores of the initial weights
    with pytest.raises(RegistryError, match=f"run {untrained} completed no training epoch.*epochs >= 1"):
        promote(untrained, "genre")
    collapsed = "every point identical (collapsed latent)"
    unscored = training_run(genre=None, tags={"val/genre/unscored": collapsed})
    with pytest.raises(RegistryError, match=rf"run {unscored} is unscored on val songs for task genre "
                                            rf"\(genre: {re.escape(collapsed)}\)"):
        promote(unscored, "genre")
    assert client.search_registered_models() == []  # nothing half-registered


def test_champions_command_lists_each_model_with_its_champion(mlflow_store, capsys):
    run_id = training_run(genre=0.4321, language=0.25)
    promote(run_id, "genre")
    promote(training_run(genre=0.5, language=0.2), "genre")
    promote(training_run("cvae_genre", genre=1.0, tags={"label_conditioned": "genre"}), "genre")
    capsys.readouterr()
    champions_cli.main([])
    lines = capsys.readouterr().out.splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header[:4] == ["model", "champion", "task", "genre NMI"]
    assert {"genre p", "language silhouette (labels)", "run", "study", "previous_champion"} <= set(header)
    rows = {row.split("|")[1].strip(): [c.strip() for c in row.strip("|").split("|")] for row in lines[2:]}
    conv = dict(zip(header, rows["conv_vae"]))
    # Chosen on val (0.5 beats 0.4321), shown with its test scores (1 - val in training_run).
    assert (conv["champion"], conv["task"], conv["genre NMI"], conv["genre ARI"]) == (
        "2", "genre", "0.5", "0.25")
    assert (conv["language NMI"], conv["genre p"], conv["previous_champion"]) == ("0.8", "0.01", "1")
    assert mlflow.get_run(conv["run"]).data.metrics["val/genre/nmi"] == 0.5
    cvae = dict(zip(header, rows["cvae_genre"]))
    assert cvae["champion"] == "" and cvae["genre NMI"] == ""  # registered, never champion


def test_champions_command_on_an_empty_registry(mlflow_store, capsys):
    champions_cli.main([])
    assert "no registered models" in capsys.readouterr().out


@pytest.mark.slow
def test_promote_cli_input_errors_exit_1_with_a_message(mlflow_store):
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-m", "pipelines.promote", "--run-id", "nope", "--task",
                             "genre"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: no run 'nope' in the tracking store")
    run_id = training_run()
    for argv, message in ([["--run-id", run_id, "--task", "mood"], "error: unknown task 'mood'"],
                          [[], "error: pass --run-id"]):
        with pytest.raises(SystemExit) as exited:
            run_cli(lambda argv=argv: promote_cli.main(argv))
        assert str(exited.value.code).startswith(message)  # sys.exit(str) exits with status 1


def test_promote_cli_prints_the_outcome(mlflow_store, capsys):
    run_id = training_run(genre=0.4)
    outcome = promote_cli.main(["--run-id", run_id, "--task", "genre", "--study", "none"])
    assert outcome.promoted
    assert "conv_vae version 1: champion. val/genre/nmi 0.4000: first champion" in capsys.readouterr().out
    assert "study" not in MlflowClient().get_model_version("conv_vae", "1").tags  # "none" = no study


@pytest.mark.slow
def test_a_real_training_run_is_promoted_and_served(tmp_path, corpus, mlflow_store):
    from pipelines.train import main as train

    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[8,16]", "train.epochs=1")
    run_id = train(["--model", "conv_vae", "--data", str(corpus), "--overrides", " ".join(overrides)])
    outcome = promote(run_id, "both")
    assert (outcome.name, outcome.version, outcome.promoted) == ("conv_vae", 1, True)
    metrics = mlflow.get_run(run_id).data.metrics
    assert outcome.value == pytest.approx((metrics["val/genre/nmi"] + metrics["val/language/nmi"]) / 2)
    served = mlflow.pyfunc.load_model("models:/conv_vae@champion")
    # The alias resolves to this run's logged model (served as train logs it; its API is tested there).
    assert f"models:/{served.metadata.model_id}" == mlflow.get_run(run_id).data.tags["model_uri"]
    assert served.metadata.get_output_schema().inputs[0].shape == (-1, 8)  # latent_dim of the run
    (listed,) = registry.champions()
    assert listed.run_id == run_id
    assert listed.metrics["test/genre/nmi"] == pytest.approx(metrics["test/genre/nmi"])
