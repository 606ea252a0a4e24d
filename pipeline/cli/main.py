"""The `facepipe` command: Rekognition operations the AWS CLI way, plus facepipe's own commands.

facepipe [options] <operation> [parameters]     like `aws rekognition <operation>`
facepipe <command> [arguments]                  quickstart, serve, index-folder, ...
"""

from __future__ import annotations

import difflib
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import awscli
import botocore

import pipeline

from .commands import OWN_COMMANDS, run_own_command
from .driver import SERVICE, USAGE, global_options_with_values, operation_names, run_operation
from .exit_status import ExitStatus
from .help import overview, use_plain_text_fallback

DATA_DIR_OPTION = "--data-dir"
"""facepipe's own global option: the local store's directory."""

FLAG_OPTIONS = frozenset(
    {"--debug", "--no-verify-ssl", "--no-paginate", "--no-sign-request", "--version", "--v2-debug"}
)
"""The AWS CLI's global options that take no value."""

HELP_WORDS = frozenset({"help", "--help", "-h"})


def version_text() -> str:
    """One line: facepipe's version, then the AWS CLI driver's, botocore's and Python's."""
    return (
        f"facepipe/{pipeline.__version__} aws-cli/{awscli.__version__} "
        f"Python/{platform.python_version()} {platform.system()}/{platform.release()} "
        f"botocore/{botocore.__version__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `facepipe` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    value_options = global_options_with_values() | {DATA_DIR_OPTION}
    position = _command_position(args, value_options)
    command = args[position] if position is not None else None
    leading = args[:position] if position is not None else args

    if command == SERVICE and position is not None:  # `facepipe rekognition <operation>`, as after `aws`
        return main(args[:position] + args[position + 1 :])
    if command in OWN_COMMANDS and position is not None:
        return run_own_command(command, args[:position] + args[position + 1 :])
    if "--version" in leading:
        print(version_text())
        return ExitStatus.OK

    try:
        operations: dict[str, str] | None = operation_names()
        reason = ""
    except ImportError as exc:
        operations, reason = None, f"the service cannot be loaded: {exc}"

    if command is None or command == "help":
        topic = args[position + 1 :] if position is not None else []
        if topic and operations is not None and topic[0] in operations:
            return _run(operations, [topic[0], "help"])
        text = overview(operations, reason)
        if command is None and not set(leading) & HELP_WORDS:
            sys.stderr.write(text)
            sys.stderr.write("\nfacepipe: error: the following arguments are required: operation\n")
            return ExitStatus.USAGE_ERROR
        sys.stdout.write(text)
        return ExitStatus.OK

    if operations is None:
        print(f"facepipe: {reason}", file=sys.stderr)
        return ExitStatus.FAILED
    if command not in operations:
        return _unknown_operation(command, operations)
    if "--version" in args:
        print(version_text())
        return ExitStatus.OK
    if args[-1] in HELP_WORDS:  # `facepipe <operation> --help` shows the page `help` shows
        args[-1] = "help"
    return _run(operations, args)


def _run(operations: dict[str, str], args: list[str]) -> int:
    """Run an operation through the AWS CLI driver, taking out facepipe's --data-dir first."""
    try:
        data_dir, args = _take_data_dir(args)
    except ValueError as exc:
        return _usage_error(str(exc))
    if data_dir is not None and any(arg.split("=", 1)[0] == "--endpoint-url" for arg in args):
        return _usage_error("--data-dir names the local store; it cannot be combined with --endpoint-url")
    use_plain_text_fallback()
    return run_operation(args, operations, data_dir)


def _command_position(args: Sequence[str], value_options: frozenset[str]) -> int | None:
    """Index of the first argument that is not a global option or its value (None: no command)."""
    known = value_options | FLAG_OPTIONS
    skip_next = False
    for index, arg in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if arg.startswith("--"):
            name = arg.split("=", 1)[0]
            matches = [option for option in known if option.startswith(name)]
            resolved = name if name in known else (matches[0] if len(matches) == 1 else name)
            skip_next = "=" not in arg and resolved in value_options
            continue
        if arg.startswith("-") and arg != "-":
            continue
        return index
    return None


def _take_data_dir(args: list[str]) -> tuple[Path | None, list[str]]:
    """Split `--data-dir DIR` / `--data-dir=DIR` out of args; ValueError when it has no value."""
    data_dir: Path | None = None
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == DATA_DIR_OPTION:
            if index + 1 >= len(args):
                raise ValueError(f"argument {DATA_DIR_OPTION}: expected one argument")
            data_dir = Path(args[index + 1]).expanduser()
            index += 2
            continue
        if arg.startswith(DATA_DIR_OPTION + "="):
            data_dir = Path(arg.split("=", 1)[1]).expanduser()
        else:
            rest.append(arg)
        index += 1
    return data_dir, rest


def _unknown_operation(name: str, operations: dict[str, str]) -> int:
    """Usage error for a name that is neither a command nor an implemented operation."""
    from .driver import all_rekognition_operations

    if name in all_rekognition_operations():
        message = f"'{name}' is an Amazon Rekognition operation that facepipe does not implement"
    else:
        message = f"argument operation: Invalid choice '{name}'"
    close = difflib.get_close_matches(name, [*operations, *OWN_COMMANDS], n=3)
    if close:
        message += "; did you mean " + " or ".join(close) + "?"
    message += "\nRun `facepipe help` to list the commands and the implemented operations."
    return _usage_error(message)


def _usage_error(message: str) -> int:
    sys.stderr.write(f"usage: {USAGE}")
    sys.stderr.write(f"facepipe: error: {message}\n")
    return ExitStatus.USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
