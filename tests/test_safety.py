"""Nothing runs code from files or arguments: checkpoints and served-model state load with
weights_only, YAML loads as plain values; and the documented servers bind to 127.0.0.1."""

from __future__ import annotations

import pathlib
import pickle
import re

import pytest
import torch

from components.config import PROJECT_ROOT, ConfigError, load_config
from components.tracking.embedding_model import EmbeddingModel
from components.tracking.search_space import load_search_space
from components.training import checkpoint


class Payload:
    """Unpickling this would create `marker`: proof that code in the file ran."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _booby_trapped(path: pathlib.Path, marker: pathlib.Path) -> pathlib.Path:
    proof = marker.with_name("plain-unpickle-ran")
    pickle.loads(pickle.dumps(Payload(proof)))
    assert proof.exists(), "the trap is real: a plain unpickle runs it"
    torch.save({"state": {}, "model": Payload(marker)}, path)
    return path


def test_a_checkpoint_holding_code_is_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "code-ran"
    path = _booby_trapped(tmp_path / "last.pt", marker)
    with pytest.raises(ConfigError, match=f"{path} is not a checkpoint this project can load safely"):
        checkpoint.load(path)
    assert not marker.exists()
    path.write_bytes(path.read_bytes()[:50])  # damaged: the same clear error
    with pytest.raises(ConfigError, match="or it is damaged; delete it"):
        checkpoint.load(path)


def test_served_model_state_holding_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    path = _booby_trapped(tmp_path / "embedding_model.pt", marker)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        EmbeddingModel().load(path)
    assert not marker.exists()


def test_yaml_with_python_tags_builds_no_objects(tmp_path):
    marker = tmp_path / "code-ran"
    trap = f"!!python/object/apply:pathlib.Path.touch ['{marker}']"
    with pytest.raises(ConfigError, match="override: 'train.lr': .*is not a plain YAML value"):
        load_config("basic_vae", [f"train.lr={trap}"])
    space = tmp_path / "basic_vae.yaml"
    space.write_text(f"train.lr: {trap}\n")
    with pytest.raises(ConfigError, match="basic_vae.yaml"):
        load_search_space("basic_vae", space)
    assert not marker.exists()


SERVER_COMMAND = re.compile(
    r"^[ \t]+(?:\S+=\S+[ \t]+)*(?:\S*/)?(?:mlflow (?:server|ui|models serve)|optuna-dashboard)\b.*$",
    re.MULTILINE)


def test_documented_servers_bind_to_loopback_unless_the_line_says_otherwise():
    """Each server command in the documentation (README.md, docs/*.md, benchmarks/README.md) names
    its host: 127.0.0.1, or another address on a line that says why (the team's shared server must
    be reachable from the workers' machines)."""
    documents = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md")),
                 PROJECT_ROOT / "benchmarks" / "README.md"]
    commands = [line for document in documents  # continued lines joined
                for line in SERVER_COMMAND.findall(document.read_text(encoding="utf-8").replace("\\\n", " "))]
    assert len(commands) >= 4
    for line in commands:
        host = re.search(r"(?:--host|-h)[ =](\S+)", line)
        assert host, f"no --host in: {line.strip()}"
        assert host.group(1) == "127.0.0.1" or "reachable from" in line, line.strip()


def test_a_password_is_masked_in_error_text_without_mangling_the_words_around_it():
    from components.tracking.redaction import masked_text

    error = 'psycopg.OperationalError: connection to "postgresql://user:p@db:5432/x" failed: password=p'
    assert masked_text(error, "postgresql://user:p@db:5432/x") == (
        'psycopg.OperationalError: connection to "postgresql://user:***@db:5432/x" failed: password=***')
    long = masked_text("auth failed for s3cret-pw (s3cret-pw)", "postgresql://u:s3cret-pw@h/db")
    assert long == "auth failed for *** (***)"
