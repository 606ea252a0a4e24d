"""`facepipe serve`: an empty s3_root (config file or command line) means no local S3 root, as it
did before the options became ServerOptions (it must not become the working directory)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.serve import build_parser, server_options


def test_an_empty_s3_root_in_the_config_file_is_no_root(tmp_path: Path) -> None:
    config = tmp_path / "server.ini"
    config.write_text("[server]\ns3_root =\nport = 9000\n")
    options = server_options(build_parser().parse_args(["--config", str(config)]))
    assert options.s3_root is None
    assert options.port == 9000


def test_an_empty_s3_root_on_the_command_line_is_no_root() -> None:
    assert server_options(build_parser().parse_args(["--s3-root", ""])).s3_root is None


@pytest.mark.parametrize("given", ["/srv/buckets", "buckets"])
def test_a_given_s3_root_is_kept(given: str) -> None:
    assert server_options(build_parser().parse_args(["--s3-root", given])).s3_root == Path(given)
