"""Config -> catalog -> feature cache: the prepare step, shared by `-e prepare` and training."""

from __future__ import annotations

from pathlib import Path

from components.config import PROJECT_ROOT
from components.data.catalog import read_catalog
from components.data.feature_cache import FeatureCache, build_cache
from components.data.splits import SplitSpec
from components.settings import DataSettings, Experiment
from corpora.demo_corpus import generate_demo_corpus


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def resolve_source(data: DataSettings) -> Path:
    """'demo' -> the generated demo corpus (made on first use); otherwise the given path."""
    if data.source == "demo":
        return generate_demo_corpus(_project_path(data.demo_dir), data.demo_songs_per_cell)
    return Path(data.source).expanduser().resolve()


def prepare_features(config: Experiment, all_test: bool = False) -> FeatureCache:
    """Read the cache for this input + feature config, building it when missing or invalid.
    all_test: every song is a test song (a corpus a model never saw, scored by pipelines.evaluate)."""
    data = config.data
    catalog = read_catalog(resolve_source(data), data.languages, data.genres)
    split = SplitSpec(data.val_fraction, data.test_fraction, data.split_seed,
                      config.eval.folds, data.fold, all_test)
    return build_cache(catalog, config.features, split,
                       _project_path(data.cache_dir), workers=data.decode_workers)
