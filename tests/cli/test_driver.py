"""The command line's own behaviour and its AWS CLI parity where no request is sent.

Skeletons, usage errors, help, version and argument routing; none of these open the store.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from botocore import xform_name

import pipeline
from pipeline.cli import commands
from pipeline.cli.commands import OwnCommand
from pipeline.cli.driver import all_rekognition_operations, operation_names
from pipeline.cli.main import _command_position
from pipeline.service import FacePipe
from tests.support.cli import Runner

OPERATIONS = sorted(xform_name(name, "-") for name in FacePipe().operations)
FACE_ID = "11111111-1111-1111-1111-111111111111"
S3_IMAGE = "S3Object={Bucket=bkt,Name=n}"

# Arguments that satisfy each operation's required members (for --generate-cli-skeleton output).
REQUIRED_ARGS: dict[str, list[str]] = {
    "associate-faces": ["--collection-id", "c", "--user-id", "u", "--face-ids", FACE_ID],
    "disassociate-faces": ["--collection-id", "c", "--user-id", "u", "--face-ids", FACE_ID],
    "create-user": ["--collection-id", "c", "--user-id", "u"],
    "delete-user": ["--collection-id", "c", "--user-id", "u"],
    "search-users": ["--collection-id", "c", "--user-id", "u"],
    "search-users-by-image": ["--collection-id", "c", "--image", S3_IMAGE],
    "list-faces": ["--collection-id", "c"],
    "list-users": ["--collection-id", "c"],
    "list-collections": [],
    "create-collection": ["--collection-id", "c"],
    "describe-collection": ["--collection-id", "c"],
    "delete-collection": ["--collection-id", "c"],
    "delete-faces": ["--collection-id", "c", "--face-ids", FACE_ID],
    "index-faces": ["--collection-id", "c", "--image", S3_IMAGE],
    "search-faces": ["--collection-id", "c", "--face-id", FACE_ID],
    "search-faces-by-image": ["--collection-id", "c", "--image", S3_IMAGE],
    "compare-faces": ["--source-image", S3_IMAGE, "--target-image", "S3Object={Bucket=bkt,Name=m}"],
    "detect-faces": ["--image", S3_IMAGE],
}


def _without_program_name(text: str) -> str:
    """Usage errors name the program: compare them with 'aws' and 'facepipe' taken out."""
    text = re.sub(r"^\S+: error:", "PROG: error:", text, flags=re.MULTILINE)
    return re.sub(r"\b(aws|facepipe)\b", "PROG", text)


def test_every_implemented_operation_has_skeleton_arguments() -> None:
    assert set(OPERATIONS) <= set(REQUIRED_ARGS), set(OPERATIONS) - set(REQUIRED_ARGS)
    assert set(operation_names()) == set(OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_input_skeleton_is_the_aws_clis(operation: str, facepipe: Runner, aws: Runner) -> None:
    ours, theirs = facepipe(operation, "--generate-cli-skeleton"), aws(operation, "--generate-cli-skeleton")
    assert ours.status == theirs.status == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    json.loads(ours.stdout)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_output_skeleton_is_the_aws_clis(operation: str, facepipe: Runner, aws: Runner) -> None:
    args = [*REQUIRED_ARGS[operation], "--generate-cli-skeleton", "output"]
    ours, theirs = facepipe(operation, *args), aws(operation, *args)
    assert ours.status == theirs.status == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    assert ours.stdout == "" or isinstance(json.loads(ours.stdout), dict)  # empty responses print nothing


def test_skeleton_with_global_options_before_the_operation(facepipe: Runner, aws: Runner) -> None:
    ours = facepipe("--output", "text", "--region", "eu-west-1", "create-user", "--generate-cli-skeleton")
    theirs = aws("create-user", "--generate-cli-skeleton", "--output", "text", "--region", "eu-west-1")
    assert ours.status == 0 and ours.stdout == theirs.stdout


def test_missing_required_option_is_the_aws_clis_usage_error(facepipe: Runner, aws: Runner) -> None:
    ours = facepipe("associate-faces", "--collection-id", "c")
    theirs = aws("associate-faces", "--collection-id", "c")
    assert ours.status == theirs.status == 2
    last_line = "PROG: error: the following arguments are required: --user-id, --face-ids"
    assert _without_program_name(ours.stderr).strip().endswith(last_line)
    assert _without_program_name(theirs.stderr).strip().endswith(last_line)
    assert ours.stdout == ""


def test_unknown_option_is_the_aws_clis_error(facepipe: Runner, aws: Runner) -> None:
    ours = facepipe("list-collections", "--colection-id", "c")
    theirs = aws("list-collections", "--colection-id", "c")
    assert ours.status == theirs.status == 255
    assert ours.stderr.strip().endswith("Unknown options: --colection-id, c")
    assert theirs.stderr.strip().endswith("Unknown options: --colection-id, c")


def test_invalid_shorthand_is_the_aws_clis_error(facepipe: Runner, aws: Runner) -> None:
    ours = facepipe("index-faces", "--collection-id", "c", "--image", "S3Object={Bucket=bkt")
    theirs = aws("index-faces", "--collection-id", "c", "--image", "S3Object={Bucket=bkt")
    assert ours.status == theirs.status == 255
    assert ours.stderr == theirs.stderr and "Error parsing parameter '--image'" in ours.stderr


def test_bad_choice_for_a_global_option_is_a_usage_error(facepipe: Runner, aws: Runner) -> None:
    ours = facepipe("list-collections", "--output", "yaml")
    theirs = aws("list-collections", "--output", "yaml")
    assert ours.status == theirs.status == 2
    assert "facepipe: error: argument --output: Invalid choice" in ours.stderr


def test_unimplemented_rekognition_operation_is_a_usage_error(facepipe: Runner) -> None:
    assert "detect-labels" in all_rekognition_operations()
    result = facepipe("detect-labels", "--image", S3_IMAGE)
    assert result.status == 2
    assert (
        "'detect-labels' is an Amazon Rekognition operation that facepipe does not implement" in result.stderr
    )
    assert "facepipe help" in result.stderr


def test_misspelt_operation_suggests_the_right_one(facepipe: Runner) -> None:
    result = facepipe("list-colections")
    assert result.status == 2
    assert "Invalid choice 'list-colections'" in result.stderr and "list-collections" in result.stderr


def test_help_lists_our_commands_and_only_implemented_operations(facepipe: Runner) -> None:
    for args in (["help"], ["--help"], ["-h"]):
        result = facepipe(*args)
        assert result.status == 0, args
        listed = set(re.findall(r"^  ([a-z-]+)  ", result.stdout, re.MULTILINE))
        assert listed == set(OPERATIONS) | set(commands.OWN_COMMANDS)
        assert "detect-labels" not in result.stdout


def test_no_arguments_is_a_usage_error_with_the_overview(facepipe: Runner) -> None:
    result = facepipe()
    assert result.status == 2
    assert "associate-faces" in result.stderr and "required: operation" in result.stderr


def test_version_is_facepipes(facepipe: Runner) -> None:
    for args in (["--version"], ["list-collections", "--version"]):
        result = facepipe(*args)
        assert result.status == 0
        assert result.stdout.startswith(f"facepipe/{pipeline.__version__} aws-cli/")


@pytest.mark.parametrize(
    "args", [["associate-faces", "help"], ["associate-faces", "--help"], ["help", "associate-faces"]]
)
def test_operation_help_is_the_aws_clis_page(args: list[str], facepipe: Runner) -> None:
    result = facepipe(*args)
    assert result.status == 0, result.stderr
    assert result.stdout == "" or "user-match-threshold" in result.stdout


def test_operation_help_without_groff_is_plain_text(facepipe_process: Runner, tmp_path: Path) -> None:
    result = facepipe_process("list-faces", "help", env={"PATH": str(tmp_path)})
    assert result.status == 0, result.stderr
    assert "Synopsis" in result.stdout and "--collection-id" in result.stdout
    assert "\b" not in result.stdout


def test_data_dir_cannot_be_combined_with_endpoint_url(facepipe: Runner, tmp_path: Path) -> None:
    result = facepipe("list-collections", "--data-dir", str(tmp_path), "--endpoint-url", "http://127.0.0.1:9")
    assert result.status == 2
    assert "--data-dir" in result.stderr and "--endpoint-url" in result.stderr


def test_own_command_that_is_not_installed_gives_a_clean_message(
    facepipe: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = OwnCommand("pipeline.no_such_module", "main", "missing")
    monkeypatch.setitem(commands.OWN_COMMANDS, "quickstart", missing)
    result = facepipe("quickstart")
    assert result.status == 1
    assert "'quickstart' command is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_own_commands_receive_their_arguments(facepipe: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    received: list[list[str]] = []

    def fake_entry(argv: list[str]) -> int:
        received.append(argv)
        return 7

    monkeypatch.setattr(OwnCommand, "load", lambda self: fake_entry)
    assert facepipe("--data-dir", "d", "serve", "--port", "1").status == 7
    assert received == [["--data-dir", "d", "--port", "1"]]


@pytest.mark.parametrize(
    ("args", "position"),
    [
        (["list-faces", "--collection-id", "c"], 0),
        (["--output", "text", "list-faces"], 2),
        (["--output=text", "--debug", "list-faces"], 2),
        (["--out", "text", "list-faces"], 2),
        (["--data-dir", "x", "--no-paginate", "quickstart"], 3),
        (["--debug"], None),
    ],
)
def test_command_position_skips_global_options(args: list[str], position: int | None) -> None:
    value_options = frozenset({"--output", "--endpoint-url", "--data-dir", "--region"})
    assert _command_position(args, value_options) == position


def test_rekognition_word_is_accepted_as_after_aws(facepipe: Runner) -> None:
    """Commands copied from AWS documentation work with `aws` replaced by `facepipe`."""
    plain = facepipe("create-user", "--generate-cli-skeleton")
    copied = facepipe("rekognition", "create-user", "--generate-cli-skeleton")
    assert copied == plain and copied.status == 0


def test_unreachable_endpoint_is_the_aws_clis_error(
    facepipe: Runner, aws: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    args = ["list-collections", "--endpoint-url", "http://127.0.0.1:9", "--cli-connect-timeout", "2"]
    ours, theirs = facepipe(*args), aws(*args)
    assert ours == theirs
    assert (
        ours.status == 255 and 'Could not connect to the endpoint URL: "http://127.0.0.1:9/"' in ours.stderr
    )
