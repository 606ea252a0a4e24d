"""Run `facepipe` and the real `aws rekognition` (AWS CLI v1) side by side.

``facepipe(...)`` and ``aws(...)`` run the commands in this process (fast; both drivers see the
same seeded ``random``, so even the AWS CLI's random enum values in skeletons agree);
``facepipe_process(...)`` runs `python -m pipeline.cli.main` as a user would. The AWS
environment is isolated: no config or credentials files, a fixed region, dummy keys.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import sys
from collections.abc import Callable

import awscli.clidriver
import pytest

from pipeline.cli.main import main as facepipe_main
from tests.support.cli import Result, Runner, run_command


def _capture(call: Callable[[], int | None], seed: int) -> Result:
    out, err = io.StringIO(), io.StringIO()
    random.seed(seed)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = call()
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
    return Result(0 if status is None else status, out.getvalue(), err.getvalue())


@pytest.fixture(autouse=True)
def aws_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user AWS configuration leaks in; a region and dummy credentials are set."""
    empty = tmp_path_factory.mktemp("aws-config")
    for name in [name for name in os.environ if name.startswith("AWS_") and name != "AWS_DATA_PATH"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("PAGER", "cat")


@pytest.fixture()
def facepipe() -> Runner:
    """``facepipe(*args, seed=0)``: run `facepipe <args>` in this process."""

    def run(*args: str, seed: int = 0) -> Result:
        return _capture(lambda: facepipe_main(list(args)), seed)

    return run


@pytest.fixture()
def aws() -> Runner:
    """``aws(*args, seed=0)``: run `aws rekognition <args>` (the AWS CLI v1 driver) in this process."""

    def run(*args: str, seed: int = 0) -> Result:
        return _capture(lambda: awscli.clidriver.create_clidriver().main(["rekognition", *args]), seed)

    return run


@pytest.fixture()
def facepipe_process() -> Runner:
    """``facepipe_process(*args, env=None)``: run `facepipe <args>` as a separate process."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> Result:
        return run_command(
            [sys.executable, "-m", "pipeline.cli.main", *args], {**os.environ, **(env or {})}, timeout
        )

    return run
