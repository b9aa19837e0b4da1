"""What the tracking layer says on the console: one-line errors, and MLflow's notes kept off it."""

from __future__ import annotations


def tracking_error_line(exc: BaseException, first_line: str) -> str | None:
    """One line with the fix for an MLflow error; None for any other error."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return f"tracking: {first_line}; check MLFLOW_TRACKING_URI / tracking.uri, or run with tracking=none"
    return None


def quiet_store_logs() -> None:
    """MLflow's INFO lines when it creates a SQLite store ("Creating initial MLflow database
    tables...") need no action: not on the console."""
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
