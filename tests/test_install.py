"""The installation a user gets from a plain `pip install`: optional packages, one OpenCV, versions.

Commands run in a child Python whose optional module is made unimportable (``sys.modules[name] =
None`` before facepipe runs), as on an install without the extra: each must end with its exit
status and one line saying how to get the package, never a traceback.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def run_without(modules: list[str], argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`facepipe argv` in a child Python where each of ``modules`` cannot be imported."""
    code = (
        "import sys\n"
        f"for name in {modules!r}:\n"
        "    sys.modules[name] = None\n"
        "from pipeline.cli.main import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = {**os.environ, "FACEPIPE_HOME": str(tmp_path / "home"), "FACEPIPE_CACHE": str(tmp_path / "cache")}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path
    )


def test_bench_without_matplotlib_writes_its_results_and_says_how_to_get_the_plots(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = ["bench", "--suite", "search", "--quick", "--sizes", "search=200", "--repeat", "1"]
    result = run_without(
        ["matplotlib"], [*argv, "--warmup", "0", "--provider", "cpu", "--out", str(out)], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    hints = [line for line in result.stderr.splitlines() if "facepipe[bench]" in line]
    assert hints == [
        "facepipe bench: plots not drawn: matplotlib is not installed (pip install 'facepipe[bench]' adds it)"
    ]
    run = json.loads((out / "results.json").read_text())
    assert run["suites"]["search"]["status"] == "ok" and run["plots"] == []
    assert not list(out.glob("*.png"))
    summary = (out / "summary.md").read_text()
    assert "pip install 'facepipe[bench]'" in summary and "## search" in summary


def test_ray_engine_without_ray_is_a_one_line_usage_error(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    argv = ["index-folder", str(folder), "--collection-id", "c", "--create-collection", "--engine", "ray"]
    result = run_without(["ray"], argv, tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "facepipe index-folder: error (InvalidParameterException): the Ray engine needs the 'ray' package: "
        "pip install 'facepipe[ray]' (or pip install ray)"
    ]


def test_quickstart_without_the_sample_photos_says_how_to_add_them(tmp_path: Path) -> None:
    result = run_without(["insightface"], ["quickstart"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "facepipe quickstart: the sample photos ship in the insightface package, which is not installed; "
        "add them with: pip install --no-deps insightface==2.1"
    )


def test_exactly_one_opencv_distribution_is_installed() -> None:
    installed = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    assert len(installed) == 1, f"several distributions write the cv2 module: {installed}"
    assert installed[0].startswith("opencv-python-headless ")
    requires = importlib.metadata.requires("facepipe") or []
    assert [r for r in requires if r.startswith("opencv")] == ["opencv-python-headless>=4.9"]


def test_version_names_the_botocore_that_is_installed_and_used(tmp_path: Path) -> None:
    code = (
        "import sys, botocore\n"
        "from pipeline.cli.main import main\n"
        "status = main(['--version'])\n"
        "print(sys.modules['botocore'].__file__)\n"
        "sys.exit(status)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    version_line, loaded_from = result.stdout.splitlines()
    words = version_line.split()
    assert words[0] == f"facepipe/{importlib.metadata.version('facepipe')}"
    assert f"aws-cli/{importlib.metadata.version('awscli')}" in words
    assert words[-1] == f"botocore/{importlib.metadata.version('botocore')}"
    installed = importlib.metadata.distribution("botocore").locate_file("botocore/__init__.py")
    assert Path(loaded_from).resolve() == Path(str(installed)).resolve()


def test_the_driver_runs_on_the_installed_botocore_even_though_awscli_carries_its_own(tmp_path: Path) -> None:
    """awscli's import alias would load its own older botocore; the CLI package imports the installed one first."""
    code = (
        "import sys\n"
        "from pipeline.cli.main import main\n"
        "status = main(['list-collections', '--data-dir', sys.argv[1]])\n"
        "import awscli.clidriver, botocore.session\n"
        "print(botocore.__version__, botocore.session.__file__, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    env = {**os.environ, "FACEPIPE_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["CollectionIds"] == []
    version, session_file = result.stderr.strip().splitlines()[-1].split()
    assert version == importlib.metadata.version("botocore")
    assert "awscli" not in Path(session_file).parts


def test_the_installed_package_carries_its_manifests_type_marker_and_pytest_plugin() -> None:
    manifests = importlib.resources.files("pipeline.manifests")
    assert json.loads(manifests.joinpath("default.json").read_text())["calibration"]
    assert importlib.resources.files("pipeline").joinpath("py.typed").is_file()
    plugins = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="pytest11")}
    assert plugins.get("facepipe") == "pipeline.testing.plugin"


@pytest.mark.parametrize("extra", ["bench", "ray", "test", "postgresql", "gpu"])
def test_each_extra_named_in_a_message_exists(extra: str) -> None:
    metadata = importlib.metadata.metadata("facepipe")
    assert extra in (metadata.get_all("Provides-Extra") or [])
