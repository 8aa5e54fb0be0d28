"""The file MLflow runs to load a logged embedding model ("models from code"): it names the
PythonModel class; the weights come from the model's artifact in load_context."""

import mlflow

from components.tracking.embedding_model import EmbeddingModel

mlflow.models.set_model(EmbeddingModel())
