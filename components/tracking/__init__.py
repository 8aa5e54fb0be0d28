"""MLflow and Optuna: runs, the registry, studies, search spaces, the served model."""
