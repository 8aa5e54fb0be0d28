"""The errors a user's input or setup can cause. Each message names the key, file, run or store
and the fix; the entry points end with that one line instead of a traceback
(pipelines.arguments.run_cli). Imports nothing, so a command line can catch them before the
heavy imports."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file, override or value that cannot be used; the message names the key, what is
    allowed and the fix."""


class CatalogError(ValueError):
    """Input that cannot be processed at all; the message names every offending file or row."""


class RegistryError(ValueError):
    """A promotion or lookup that cannot be done; the message names the run or model and the fix."""


class TrackingError(Exception):
    """The tracking store cannot be reached, or stopped answering during a run."""


USER_ERRORS = (ConfigError, CatalogError, RegistryError, TrackingError)
