"""Score a logged or registered model under the declared protocol, as its own MLflow run.

    mlflow run . -e evaluate -P model_uri=models:/conv_vae@champion --env-manager local
    mlflow run . -e evaluate -P model_uri=models:/vade/3 -P data=/songs/other/metadata.csv -P split=all
    python -m pipelines.evaluate --model-uri models:/conv_vae@champion [--data CORPUS] [--split test|all]

split test (default): the test songs of the corpus (default: the one the model was trained on,
split exactly as in training), which nothing was tuned on. split all: every song of a corpus the
model never saw. The scores are linked to the logged model and, for a registry URI, written onto
the version's tags (under `<corpus>/` for another corpus than the training one's).
"""

from __future__ import annotations

import argparse

from components.config import ConfigError, logged_config, with_overrides
from components.data.lyrics import embed_lyrics
from components.data.preparation import prepare_features
from components.evaluation.scoring import Protocol, headline_lines, served_scores
from components.tracking import mlflow_runs as tracking
from components.tracking import registry
from components.vocabulary import REPORT
from pipelines.arguments import run_cli, use_tracking_uri

# What an evaluation may change: the protocol, which corpus, where caches go, where runs go.
CHANGEABLE = ("eval.", "data.source", "data.cache_dir", "data.decode_workers", "data.demo_dir",
              "tracking.")


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-uri", required=True, help="models:/<name>@<alias>, models:/<name>/<version> "
                   "or models:/m-<id> (a logged model)")
    p.add_argument("--data", default="none", help="corpus to score (default: the training corpus)")
    p.add_argument("--split", default="test", help="test: its test songs; all: every song (a corpus "
                   "the model never saw)")
    p.add_argument("--overrides", default="none", help="space-separated eval.* / data.* overrides, "
                   "e.g. 'eval.unit=window eval.permutations=5000'")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    args = p.parse_args(argv)
    use_tracking_uri(args)
    if args.split not in ("test", "all"):
        raise ConfigError(f"--split {args.split!r}: use test (the corpus's test songs) or all "
                          f"(every song of a corpus the model never saw)")
    tracking.connect()
    served, run_id, model_id = tracking.load_served_model(args.model_uri)
    version = registry.version_of(args.model_uri)
    trained, params = tracking.training_run(run_id)
    overrides = [] if args.overrides.strip() in ("", "none") else args.overrides.split()
    if args.data.strip() not in ("", "none"):
        overrides.append(f"data.source={args.data}")
    config = with_overrides(logged_config(trained), overrides, CHANGEABLE)
    cache = prepare_features(config, all_test=args.split == "all")
    # The training corpus's own lyrics encoder is refitted on its train songs; another corpus has
    # none to fit it on, so a multimodal model scores it with its "no lyrics" vector.
    lyrics = (embed_lyrics(cache, config.lyrics, config.seed)
              if served.lyrics_dim and args.split == "test" else None)
    protocol = Protocol.from_config(config)
    same_corpus = (cache.digest, cache.split_key) == (params.get("data.cache_digest"),
                                                      params.get("data.split_key"))
    tags = {"evaluated_model_uri": args.model_uri, "source_run_id": run_id, "model": served.name,
            "evaluation.split": args.split, "evaluation.same_corpus_as_training": str(same_corpus)}
    if version is not None:
        tags |= {"registered_model": version[0], "model_version": str(version[1])}
    if served.condition_on:
        tags["label_conditioned"] = served.condition_on
    with tracking.run(config.tracking, run_name=f"evaluate-{served.name}", tags=tags):
        evaluation_run = tracking.active_run_id()
        tracking.log_config(config, [])
        tracking.log_dataset(cache, context="evaluation")
        scores = served_scores(served, cache, REPORT, protocol, config.seed, lyrics)
        tracking.log_evaluation(scores, model_id, cache)
    if version is not None:
        prefix = "" if same_corpus and args.split == "test" else f"corpus-{cache.digest[:8]}/"
        tagged = {prefix + name: scores[name] for name in registry.METRIC_NAMES if name in scores}
        registry.tag_version(*version, tagged | {f"{prefix}evaluation_run_id": evaluation_run})
    print("\n".join([f"evaluation run {evaluation_run} of {args.model_uri} ({args.split} songs of "
                     f"{config.data.source})", *headline_lines(scores, protocol)]))
    return evaluation_run


if __name__ == "__main__":
    run_cli(main)
