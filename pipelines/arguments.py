"""Command-line parsing shared by the entry points: model name + strict config overrides."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from components.config import check_before_imports, load_config
from components.error_summary import os_error_line
from components.errors import USER_ERRORS, ConfigError
from components.settings import Experiment


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="architecture: a key of components.models.MODELS")
    p.add_argument("--data", default="", help="metadata.csv or <root>/<language>/<genre>/ folder "
                   "(default: data.source of the config, the demo corpus)")
    p.add_argument("--overrides", default="", help="space-separated key=value config overrides, "
                   "e.g. 'train.epochs=10 model.latent_dim=64'")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI, e.g. a shared server "
                   "http://host:5000 (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db; under "
                   "`mlflow run`, set MLFLOW_TRACKING_URI instead)")
    return p


def resolve(args: argparse.Namespace, extra: list[str]) -> Experiment:
    """Config from args. `mlflow run -P train.lr=1e-3` arrives as `--train.lr 1e-3` (undeclared
    project params); those and --overrides go through the same strict key/type checks. The shared
    keys are checked before the architecture (and torch) is imported, so a typo fails at once."""
    use_tracking_uri(args)
    overrides = overrides_of(args, extra)
    check_before_imports(args.model, overrides)
    return load_config(args.model, overrides)


def use_tracking_uri(args: argparse.Namespace) -> None:
    """--tracking-uri for this process. `mlflow run` has already opened the project's run in
    its own store, so there a different URI would split the run from its trials: refused."""
    if not args.tracking_uri:
        return
    current = os.environ.get("MLFLOW_TRACKING_URI")
    if os.environ.get("MLFLOW_RUN_ID") and current and current != args.tracking_uri:
        raise ConfigError(f"--tracking-uri {args.tracking_uri} under `mlflow run`, whose run lives in "
                          f"{current}: set MLFLOW_TRACKING_URI before `mlflow run` instead")
    os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri


def overrides_of(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The key=value overrides the arguments name (--overrides, --data, --section.key value)."""
    # MLproject passes "none" for no overrides: an empty string param would vanish from the command.
    overrides = [] if args.overrides.strip() in ("", "none") else args.overrides.split()
    if len(extra) % 2:
        raise ConfigError(f"cannot parse arguments {extra}: expected --section.key value pairs")
    for flag, value in zip(extra[::2], extra[1::2]):
        if not flag.startswith("--"):
            raise ConfigError(f"unexpected argument '{flag}': overrides look like --train.epochs 10")
        overrides.append(f"{flag[2:]}={value}")
    if args.data:
        overrides.append(f"data.source={args.data}")
    return overrides


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry point; input errors and OS errors a user can cause (no space, permissions, a
    file where a folder belongs) end with one line naming the key or path and the fix on stderr
    and exit status 1, not a traceback. Anything else still raises: a bug of this project.
    SIGTERM stops it as Ctrl-C does (runs end KILLED, workers shut down, checkpoints kept)."""
    signal.signal(signal.SIGTERM, _stop)
    # A process started in the background of a script inherits SIGINT ignored, and Python then
    # installs no Ctrl-C handler: restored, so SIGINT stops every entry point (and a tune driver's
    # workers) wherever it was started from.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except USER_ERRORS as err:
        sys.exit(f"error: {err}")
    except OSError as err:
        sys.exit(f"error: {os_error_line(err)}")
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the run is KILLED and resumable
        print(f"stopped: {err or 'interrupted'}", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
