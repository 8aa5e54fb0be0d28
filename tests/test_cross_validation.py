"""eval.folds: song-disjoint folds as nested runs, their test scores summarised, resumable."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from components.evaluation.cross_validation import fold_summary
from pipelines import cross_validation
from pipelines import train as train_pipeline
from tests.conftest import tiny_overrides


def _args(tmp_path, corpus, *extra):
    overrides = tiny_overrides(tmp_path, "model.hidden_dims=[16,8]", "train.epochs=1", "eval.folds=3",
                               "eval.permutations=200", "eval.bootstrap=200", *extra)
    return ["--model", "basic_vae", "--data", str(corpus), "--overrides", " ".join(overrides)]


@pytest.mark.slow
def test_folds_are_song_disjoint_runs_summarised_and_resumable(tmp_path, corpus, mlflow_store, monkeypatch):
    original = cross_validation.train  # what each fold runs
    interrupted = []

    def train_once_interrupted(config, *args, **kwargs):
        if config.data.fold == 1 and not interrupted:
            interrupted.append(mlflow.active_run().info.run_id)
            raise KeyboardInterrupt  # Ctrl-C during the second fold
        return original(config, *args, **kwargs)

    monkeypatch.setattr(cross_validation, "train", train_once_interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_pipeline.main(_args(tmp_path, corpus))
    (parent,) = [r for r in mlflow.search_runs(search_all_experiments=True, output_format="list")
                 if "cv.folds" in r.data.tags]
    assert parent.info.status == "KILLED"
    first = {r.data.tags["cv.fold"]: r for r in mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.cv.parent = '{parent.info.run_id}'",
        output_format="list")}
    assert first["0"].info.status == "FINISHED" and first["1"].info.status == "KILLED"

    resumed = train_pipeline.main([*_args(tmp_path, corpus), "--resume", parent.info.run_id])
    assert resumed == parent.info.run_id
    folds = {r.data.tags["cv.fold"]: r for r in mlflow.search_runs(
        search_all_experiments=True, filter_string=f"tags.cv.parent = '{parent.info.run_id}'",
        output_format="list")}
    assert sorted(folds) == ["0", "1", "2"] and all(r.info.status == "FINISHED" for r in folds.values())
    assert folds["0"].info.run_id == first["0"].info.run_id  # the finished fold was not retrained
    assert folds["1"].info.run_id == interrupted[0]  # the interrupted one resumed in its own run
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in folds.values())

    test_songs = []
    for run in folds.values():
        songs = pd.read_csv(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="data/songs_by_split.csv"))
        test_songs.append(set(songs.song_id[songs.split == "test"]))
        assert songs[songs.split == "test"].language.nunique() == 4
    assert sum(map(len, test_songs)) == 12 == len(set().union(*test_songs))  # a partition of the songs

    summary = mlflow.get_run(parent.info.run_id).data.metrics
    values = [r.data.metrics["test/genre/nmi"] for r in folds.values()]
    assert summary["test/genre/nmi_mean"] == pytest.approx(np.mean(values))
    assert summary["test/genre/nmi_std"] == pytest.approx(np.std(values, ddof=1))
    assert 0 <= summary["test/genre/folds_beating_chance"] <= 3 and summary["cv/folds"] == 3
    assert "test/genre/mfcc/nmi_mean" in summary


def test_fold_summary_counts_folds_beating_chance_and_skips_selection_scores():
    folds = [{"test/genre/nmi": v, "test/genre/beats_chance": b, "val/genre/nmi": 0.9,
              "test/genre/gmm/nmi": 0.1, "test/genre/mfcc/nmi": 0.2}
             for v, b in ((0.2, 0.0), (0.4, 1.0), (0.6, 1.0))]
    summary = fold_summary(folds)
    assert summary["test/genre/nmi_mean"] == pytest.approx(0.4)
    assert summary["test/genre/nmi_std"] == pytest.approx(0.2)
    assert summary["test/genre/folds_beating_chance"] == 2
    assert summary["test/genre/mfcc/nmi_mean"] == pytest.approx(0.2)
    assert not any(k.startswith("val/") or "gmm" in k for k in summary)
