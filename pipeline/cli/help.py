"""Help text: facepipe's overview (`facepipe help`) and the AWS CLI's per-operation pages.

Per-operation help (`facepipe <operation> help`) is the AWS CLI's own page. It is rendered with
groff or mandoc when one is installed, as plain text otherwise.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

import awscli.help
from awscli.bcdoc.textwriter import TextWriter
from botocore.session import Session
from docutils.core import publish_string

import pipeline

from .commands import OWN_COMMANDS
from .driver import DEFAULT_REGION, SERVICE


class PlainTextFallbackRenderer(awscli.help.PosixHelpRenderer):
    """The AWS CLI's POSIX help renderer, falling back to plain text without groff or mandoc."""

    def _convert_doc_content(self, contents: bytes) -> bytes:
        if self._exists_on_path("groff") or self._exists_on_path("mandoc"):
            return bytes(super()._convert_doc_content(contents))
        return bytes(
            publish_string(
                contents,
                writer=TextWriter(),
                settings_overrides=self._DEFAULT_DOCUTILS_SETTINGS_OVERRIDES,
            )
        )


def use_plain_text_fallback() -> None:
    """Make the AWS CLI's help pages render as plain text where groff and mandoc are missing."""
    awscli.help.get_renderer = PlainTextFallbackRenderer


def operation_summaries(operations: Mapping[str, str]) -> dict[str, str]:
    """CLI name -> the first sentence of the operation's documentation in botocore's model."""
    model = Session().get_service_model(SERVICE)
    summaries = {}
    for cli_name, name in operations.items():
        text = re.sub(r"<[^>]+>", "", model.operation_model(name).documentation)
        text = " ".join(html.unescape(text).split())
        sentence = re.split(r"(?<=\.)\s", text, maxsplit=1)[0]
        summaries[cli_name] = sentence if len(sentence) <= 90 else sentence[:87].rstrip() + "..."
    return summaries


def overview(operations: Mapping[str, str] | None, unavailable_reason: str = "") -> str:
    """The text of `facepipe help`: commands, operations and options.

    operations: implemented operations (CLI name -> botocore name), or None when the service
    cannot be loaded (unavailable_reason says why).
    """
    lines = [
        f"facepipe {pipeline.__version__}: Amazon Rekognition face collections, offline, on real models.",
        "",
        "usage: facepipe [options] <operation> [parameters]",
        "       facepipe <command> [arguments]",
        "",
        "`facepipe <operation>` behaves like `aws rekognition <operation>` (AWS CLI v1): the same",
        "options, shorthand, file:// and fileb://, --cli-input-json, --generate-cli-skeleton,",
        "--output, --query, errors and exit codes (2 usage error, 255 service error).",
        "`facepipe rekognition <operation>` is accepted too, for commands copied from AWS documentation.",
        "",
        "Commands:",
    ]
    width = max(len(name) for name in OWN_COMMANDS) + 2
    lines += [f"  {name:<{width}}{command.summary}" for name, command in OWN_COMMANDS.items()]
    lines += ["", "Operations (`facepipe <operation> help` shows one in full):"]
    if operations is None:
        lines.append(f"  (unavailable: {unavailable_reason})")
    else:
        summaries = operation_summaries(operations)
        width = max(len(name) for name in operations) + 2
        lines += [f"  {name:<{width}}{summaries[name]}" for name in operations]
    lines += [
        "",
        "Where operations run:",
        "  without --endpoint-url   in this process, on the local store: --data-dir DIR, else",
        "                           $FACEPIPE_HOME, else the platform's data directory",
        "  --endpoint-url URL       on a Rekognition-compatible server (e.g. `facepipe serve`),",
        "                           signed with SigV4 from the usual AWS credential sources",
        "",
        "Global options (as in the AWS CLI): --output json|text|table, --query JMESPATH,",
        "  --color on|off|auto, --debug, --no-paginate, --profile, --region (default",
        f"  {DEFAULT_REGION} when none is configured), --no-sign-request, --ca-bundle, --no-verify-ssl,",
        "  --cli-read-timeout, --cli-connect-timeout, --version",
    ]
    return "\n".join(lines) + "\n"
