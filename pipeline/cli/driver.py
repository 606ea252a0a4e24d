"""`facepipe <operation>`: the AWS CLI v1 driver running `aws rekognition <operation>`.

The driver (``awscli.clidriver``) does all the argument work: option names, shorthand,
``file://`` and ``fileb://``, ``--cli-input-json``, ``--generate-cli-skeleton``, output
formatting, ``--query``, pagination, error text and exit codes (2 for a usage error, 255 for a
service error). Event hooks on its botocore session narrow it to the implemented operations and,
without ``--endpoint-url``, answer its requests in-process from the local store
(:class:`pipeline.cli.local.LocalTransport`), so local and remote output are the same bytes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import awscli.argparser
import awscli.clidriver
from botocore import UNSIGNED, xform_name
from botocore.config import Config
from botocore.exceptions import ProfileNotFound
from botocore.session import Session

from pipeline.cli.exit_status import ExitStatus
from pipeline.cli.local import LocalTransport

SERVICE = "rekognition"
"""The botocore service every operation belongs to."""

DEFAULT_REGION = "us-east-1"
"""Region used when none is configured (--region, AWS_DEFAULT_REGION, the profile)."""

USAGE = (
    "facepipe [options] <operation> [parameters]\n"
    "To see help text, you can run:\n"
    "\n"
    "  facepipe help\n"
    "  facepipe <operation> help\n"
)
"""Replaces the AWS CLI's usage text in the driver's usage errors (argparse adds "usage: ")."""

PROG = "facepipe"
"""Program name in usage errors ("facepipe: error: ...")."""


def operation_names() -> dict[str, str]:
    """The implemented operations: CLI name (``associate-faces``) -> botocore name (``AssociateFaces``).

    The list is :attr:`pipeline.service.FacePipe.operations`, the operations the service runs
    (a FacePipe opens its store and models on first use, so asking it touches neither).
    """
    from pipeline.service import FacePipe

    return {xform_name(name, "-"): name for name in sorted(FacePipe().operations)}


def all_rekognition_operations() -> frozenset[str]:
    """CLI names of every operation in botocore's Rekognition model, implemented or not."""
    model = Session().get_service_model(SERVICE)
    return frozenset(xform_name(name, "-") for name in model.operation_names)


def global_options_with_values() -> frozenset[str]:
    """The AWS CLI's global options that take a value (``--output``, ``--endpoint-url``, ...)."""
    session = Session(awscli.EnvironmentVariables)
    options: Mapping[str, Mapping[str, Any]] = session.get_data("cli")["options"]
    return frozenset(f"--{name}" for name, spec in options.items() if "action" not in spec)


def run_operation(argv: Sequence[str], operations: Mapping[str, str], data_dir: Path | None) -> int:
    """Run ``aws rekognition <argv>`` through the AWS CLI driver; returns the exit status.

    argv: the command line after ``facepipe`` (global options may come before or after the
      operation). operations: the allowed operations (CLI name -> botocore name).
    data_dir: the local store for requests without ``--endpoint-url`` (None: Settings' default).
    """
    driver = awscli.clidriver.create_clidriver()
    session = driver.session
    transport = LocalTransport(data_dir)
    allowed = set(operations)

    def keep_implemented(command_table: dict[str, Any], **_: Any) -> None:
        for name in [name for name in command_table if name not in allowed]:
            del command_table[name]

    def choose_mode(parsed_args: argparse.Namespace, **_: Any) -> None:
        if parsed_args.endpoint_url is None:
            _disable_signing(session)
            session.register(f"before-send.{SERVICE}", transport)

    def default_region(**_: Any) -> None:
        try:
            configured = session.get_config_variable("region")
        except ProfileNotFound:
            return  # the driver reports the missing profile itself
        if not configured:
            session.set_config_variable("region", DEFAULT_REGION)

    create_main_parser = driver._create_parser

    def create_facepipe_parser(command_table: dict[str, Any]) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = create_main_parser(command_table)
        parser.prog = PROG  # the driver names its global-option parser "aws"
        return parser

    driver._create_parser = create_facepipe_parser
    session.register(f"building-command-table.{SERVICE}", keep_implemented)
    session.register("top-level-args-parsed", choose_mode)
    session.register("session-initialized", default_region)
    saved = (awscli.argparser.USAGE, awscli.clidriver.USAGE, sys.argv[:1])
    awscli.argparser.USAGE = awscli.clidriver.USAGE = USAGE
    sys.argv[:1] = [PROG]  # argparse names the program after sys.argv[0]
    try:
        status = driver.main([SERVICE, *argv])  # None after a help page
        return ExitStatus.OK if status is None else int(status)
    except SystemExit as exc:  # argparse exits 2 on usage errors
        return _exit_status(exc)
    finally:
        awscli.argparser.USAGE, awscli.clidriver.USAGE, sys.argv[:1] = saved
        transport.close()
        sys.stdout.flush()


def _disable_signing(session: Session) -> None:
    """No SigV4 for in-process requests: no credentials are needed or looked up."""
    unsigned = Config(signature_version=UNSIGNED)
    current = session.get_default_client_config()
    session.set_default_client_config(current.merge(unsigned) if current else unsigned)


def _exit_status(exc: SystemExit) -> int:
    """The status a SystemExit stands for (None is 0, a message is 1)."""
    if exc.code is None:
        return ExitStatus.OK
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return ExitStatus.FAILED
