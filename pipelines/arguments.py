"""Command-line parsing shared by the entry points: model name + strict config overrides."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from components.catalog import CatalogError
from components.config import ConfigError, load_config
from components.registry import RegistryError
from components.tracking import TrackingError


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="architecture: a key of components.models.MODELS")
    p.add_argument("--data", default="", help="metadata.csv or <root>/<language>/<genre>/ folder "
                   "(default: data.source of the config, the demo corpus)")
    p.add_argument("--overrides", default="", help="space-separated key=value config overrides, "
                   "e.g. 'train.epochs=10 model.latent_dim=64'")
    return p


def resolve(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """Config from args. `mlflow run -P train.lr=1e-3` arrives as `--train.lr 1e-3` (undeclared
    project params); those and --overrides go through the same strict key/type checks."""
    return load_config(args.model, overrides_of(args, extra))


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


def run_cli(main: Callable[[], Any]) -> None:
    """Run an entry point; input errors end with their message (naming the key or file and the
    fix) on stderr and exit status 1, not a traceback. Anything else still raises."""
    try:
        main()
    except (ConfigError, CatalogError, RegistryError, TrackingError) as err:
        sys.exit(f"error: {err}")
