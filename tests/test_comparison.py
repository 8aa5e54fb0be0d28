"""The comparison entry point over real runs in a real MLflow store."""

from __future__ import annotations

import mlflow
import pandas as pd
import pytest

from components.evaluation.comparison import comparison_table, to_markdown
from pipelines.compare import main as compare
from pipelines.train import main as train
from tests.conftest import tiny_overrides


@pytest.mark.slow
def test_compare_tables_the_latest_run_of_each_model(tmp_path, corpus, mlflow_store):
    ids = {}
    for model, hidden in [("conv_vae", "[8,16]"), ("cvae_genre", "[8,16]"), ("conv_vae", "[8,8]")]:
        overrides = tiny_overrides(tmp_path, f"model.hidden_dims={hidden}", "train.epochs=1")
        ids[model] = train(["--model", model, "--data", str(corpus), "--overrides", " ".join(overrides)])
    run_id = compare([])
    client = mlflow.MlflowClient()
    assert {a.path for a in client.list_artifacts(run_id, "comparison")} == {
        "comparison/comparison.md", "comparison/comparison.csv"}
    table = pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id,
                                                            artifact_path="comparison/comparison.csv"))
    assert list(table.model) == ["conv_vae", "cvae_genre", "MFCC statistics", "report's targets"]
    conv = table.set_index("model").loc["conv_vae"]
    assert conv.run == ids["conv_vae"][:8]  # the newer of the two conv_vae runs
    metrics = mlflow.get_run(ids["conv_vae"]).data.metrics
    assert float(conv["genre NMI"]) == round(metrics["test/genre/nmi"], 3)
    assert float(conv["genre p"]) == round(metrics["test/genre/nmi_p_value"], 3)
    assert conv["genre verdict"] in ("chance", "beats chance")
    assert float(conv.parameters) > 0 and float(conv.epochs) == 1
    cvae = table.set_index("model").loc["cvae_genre"]
    assert cvae["genre NMI"] == "label-conditioned: not a result" and pd.isna(cvae["genre p"])
    assert float(cvae["language NMI"]) >= 0


def test_markdown_has_one_line_per_row():
    table = comparison_table([])
    assert to_markdown(table).count("\n") == 2 + len(table)
