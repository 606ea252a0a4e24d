"""`facepipe serve`'s options: the config file's keys are ServerOptions' fields, and the command line
overrides the file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.cli.serve import CONFIG_KEYS, build_parser, server_options
from pipeline.protocol.server import ServerOptions


def test_every_config_key_is_a_server_option() -> None:
    fields = {f.name for f in dataclasses.fields(ServerOptions)}
    assert set(CONFIG_KEYS) - {"credentials_file"} == fields - {"credentials_files"}


def test_the_command_line_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "server.ini"
    config.write_text(
        "[server]\nport = 9000\nthreads = 3\ndata_dir = /srv/x\ncredentials_file = /etc/a\nmetrics = true\n"
    )
    args = build_parser().parse_args(
        ["--config", str(config), "--port", "9001", "--no-auth", "--credentials-file", "/etc/b"]
    )
    options = server_options(args)
    assert options == ServerOptions(
        port=9001,
        threads=3,
        data_dir=Path("/srv/x"),
        auth=False,
        credentials_files=(Path("/etc/a"), Path("/etc/b")),
        metrics=True,
    )
    assert server_options(build_parser().parse_args([])) == ServerOptions()
