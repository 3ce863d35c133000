"""build.sh: the front door's commands behave as the README says."""

import shutil
import subprocess

import pytest


def _engine_usable() -> bool:
    for engine in ("docker", "podman"):
        if shutil.which(engine) and subprocess.run([engine, "info"], capture_output=True).returncode == 0:
            return True
    return False


def test_help_lists_every_command(repo_root):
    out = subprocess.run(["bash", str(repo_root / "build.sh"), "help"], capture_output=True, text=True,
                         check=True).stdout
    for command in ("setup", "test", "demo", "compile", "protos", "images"):
        assert f"  {command}" in out


def test_unknown_command_is_one_clear_line(repo_root):
    done = subprocess.run(["bash", str(repo_root / "build.sh"), "deploy"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == "[build.sh] error: unknown command 'deploy' (try ./build.sh help)"


@pytest.mark.skipif(_engine_usable(), reason="a container engine is usable here")
def test_images_without_an_engine_fails_clearly(repo_root):
    done = subprocess.run(["bash", str(repo_root / "build.sh"), "images"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("[build.sh] error: no usable container engine: install docker "
                                          "or podman")


def test_ci_runs_the_readme_test_command(repo_root):
    assert "./build.sh test" in (repo_root / ".ci" / "run").read_text()
    readme = (repo_root / "README.md").read_text()
    assert "./build.sh demo" in readme and "./build.sh test" in readme
