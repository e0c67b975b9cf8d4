"""Real-time endpoints and batch predictions (SageMaker endpoints, Azure online endpoints)."""
