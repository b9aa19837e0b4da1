"""ffm-optics orchestration: training loops, (later) Ray actors, MLflow tracking, Hydra CLI."""
