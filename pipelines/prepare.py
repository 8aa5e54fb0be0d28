"""Prepare the feature cache (decode, window, log-mel, split, normalisation statistics).

    mlflow run . -e prepare -P data=path/to/metadata.csv --env-manager local
    python -m pipelines.prepare --model conv_vae [--data PATH]
"""

from __future__ import annotations

import sys

from pipelines.arguments import parser, resolve, run_cli


def main(argv: list[str] | None = None) -> None:
    args, extra = parser(__doc__.splitlines()[0]).parse_known_args(argv)
    config = resolve(args, extra)
    # Imported once the config is checked: a typo fails before the audio and MLflow stacks load.
    from components.data.preparation import prepare_features
    from components.tracking import mlflow_runs as tracking

    tags = {"entry_point": "prepare", **tracking.process_tag()}
    with tracking.run(config.tracking, run_name="prepare", tags=tags):
        for run_id in tracking.end_runs_of_dead_processes("prepare"):
            print(f"note: prepare run {run_id} was killed; marked KILLED", file=sys.stderr)
        cache = prepare_features(config)
        tracking.log_dataset(cache)
        tracking.log_metrics({"prepare/build_seconds": cache.manifest["build_seconds"],
                              "prepare/skipped_songs": cache.manifest["skipped"]})
    skipped = cache.skipped
    songs = cache.rows.groupby("song_id").split.first().value_counts()
    print(f"cache {cache.path}: {cache.manifest['windows']} windows from {cache.manifest['songs']} "
          f"songs ({', '.join(f'{songs.get(s, 0)} {s}' for s in ('train', 'val', 'test'))}), "
          f"{len(skipped)} skipped")
    for row in skipped.itertuples():
        print(f"  skipped {row.song}: {row.reason}", file=sys.stderr)


if __name__ == "__main__":
    run_cli(main)
