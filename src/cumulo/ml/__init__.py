"""Machine learning: MLflow tracking inside the control plane (training, registry and tuning
build on it)."""
