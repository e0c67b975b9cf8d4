"""The names the package promises, and that importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import cumulo
import cumulo.errors


def test_exported_names() -> None:
    assert cumulo.__all__ == ["Client", "__version__", "load_ipython_extension"]
    assert cumulo.errors.__all__ == ["Conflict", "CumuloError", "Forbidden", "Invalid",
                                     "NotFound", "QuotaExceeded", "TooLarge",
                                     "TooManyRequests", "Unauthorized",
                                     "Unavailable",
                                     "error_from_payload"]
    from cumulo.client import Client

    assert cumulo.Client is Client


def test_deploy_and_batch_handles() -> None:
    # SageMaker's shapes: a model version deploys to an endpoint's handle (the predictor);
    # a transformer scores tables.
    import cumulo.ml.sdk
    import cumulo.serving.sdk

    assert cumulo.ml.sdk.__all__ == ["Model", "ModelVersion", "ModelsClient"]
    assert cumulo.serving.sdk.__all__ == ["Endpoint", "EndpointsClient", "Transformer"]
    assert all(callable(getattr(cumulo.Client, name)) for name in ("estimator", "transformer"))


def test_import_and_help_load_no_server_or_heavy_modules() -> None:
    code = ("import sys, cumulo, cumulo.cli.app; "
            "print(' '.join(m for m in ('sqlalchemy', 'fastapi', 'uvicorn', 'boto3', 'torch', "
            "'alembic') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""


def test_the_server_loads_the_lake_engines_only_when_used() -> None:
    # The control plane's idle memory stays small (object storage moves 2 GB in under 200 MB).
    code = ("import sys; from cumulo.server.app import create_app; "
            "print(' '.join(m for m in ('pyarrow', 'deltalake', 'duckdb', 'polars', 'pandas') "
            "if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert loaded == ""


def test_the_monitors_client() -> None:
    import cumulo.serving.monitors.sdk

    assert cumulo.serving.monitors.sdk.__all__ == ["MonitorsClient"]
    assert {"create", "list", "show", "delete", "run", "reports"} <= set(
        dir(cumulo.serving.monitors.sdk.MonitorsClient))
    assert "monitors" in dir(cumulo.Client)
