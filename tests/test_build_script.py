"""build.sh: the front door's commands behave as the README says."""

import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tlt import __version__
from tlt.orchestration.paths import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE


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


_NO_ENGINE = ("[build.sh] error: no usable container engine: install docker or podman and make sure its "
              "daemon/service runs ('docker info' must succeed)")


def _fake_engines(folder: Path, info_ok: bool) -> Path:
    """``docker`` and ``podman`` scripts in ``folder``: ``info`` succeeds or fails (a client without a
    daemon), ``build`` appends its arguments, one per line, to ``folder/<engine>.log``."""
    folder.mkdir(parents=True, exist_ok=True)
    for engine in ("docker", "podman"):
        script = folder / engine
        script.write_text(textwrap.dedent(f"""\
            #!/usr/bin/env bash
            case "$1" in
              info) {"exit 0" if info_ok else "echo 'Cannot connect to the Docker daemon' >&2; exit 1"} ;;
              build) shift; printf '%s\\n' "--- build" "$@" >> "{folder}/{engine}.log"; exit 0 ;;
            esac
            exit 2
            """))
        script.chmod(0o755)
    return folder


def _images(repo_root: Path, fake_bin: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("TLT_IMAGE", "TLT_GPU_IMAGE")}
    full.update(env, PATH=f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(["bash", str(repo_root / "build.sh"), "images", *args], capture_output=True,
                          text=True, env=full, cwd=fake_bin)


@pytest.mark.skipif(_engine_usable(), reason="a container engine is usable here")
def test_images_without_an_engine_fails_clearly(repo_root):
    done = subprocess.run(["bash", str(repo_root / "build.sh"), "images"], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.strip() == _NO_ENGINE


def test_images_with_a_client_but_no_daemon_is_one_line(repo_root, tmp_path):
    """docker is installed but its daemon does not answer (as on this machine): one line, no build."""
    fake = _fake_engines(tmp_path / "bin", info_ok=False)
    done = _images(repo_root, fake)
    assert done.returncode == 1
    assert done.stderr.strip() == _NO_ENGINE
    assert not (fake / "docker.log").exists() and not (fake / "podman.log").exists()


def _builds(log: Path) -> list[list[str]]:
    return [chunk.strip("\n").split("\n") for chunk in log.read_text().split("--- build\n") if chunk]


def test_images_builds_both_tagged_with_the_package_version(repo_root, tmp_path):
    fake = _fake_engines(tmp_path / "bin", info_ok=True)
    done = _images(repo_root, fake)
    assert done.returncode == 0, done.stderr
    assert _builds(fake / "docker.log") == [
        ["-f", "components/Dockerfile.cpu", "-t", f"ghcr.io/tlt-pipelines/tlt:{__version__}", "."],
        ["-f", "components/Dockerfile.gpu", "-t", f"ghcr.io/tlt-pipelines/tlt:{__version__}-gpu", "."],
    ]
    assert [DEFAULT_IMAGE, DEFAULT_GPU_IMAGE] == [f"ghcr.io/tlt-pipelines/tlt:{__version__}",
                                                   f"ghcr.io/tlt-pipelines/tlt:{__version__}-gpu"]
    assert not (fake / "podman.log").exists()  # docker answered first
    assert f"building the gpu image {DEFAULT_GPU_IMAGE} from components/Dockerfile.gpu with docker" \
        in done.stderr
    for flavour in ("cpu", "gpu"):  # the build context is the checkout root, where the files are
        assert (repo_root / "components" / f"Dockerfile.{flavour}").is_file()


def test_images_one_flavour_and_the_override(repo_root, tmp_path):
    fake = _fake_engines(tmp_path / "bin", info_ok=True)
    done = _images(repo_root, fake, "gpu", TLT_GPU_IMAGE="mirror.local/tlt:x-gpu")
    assert done.returncode == 0, done.stderr
    assert _builds(fake / "docker.log") == [["-f", "components/Dockerfile.gpu", "-t", "mirror.local/tlt:x-gpu", "."]]
    wrong = _images(repo_root, fake, "tpu")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "[build.sh] error: unknown image 'tpu': expected cpu, gpu or all"


def test_images_falls_back_to_podman(repo_root, tmp_path):
    fake = _fake_engines(tmp_path / "bin", info_ok=True)
    (fake / "docker").write_text("#!/usr/bin/env bash\nexit 1\n")  # a docker client without a daemon
    done = _images(repo_root, fake, "cpu")
    assert done.returncode == 0, done.stderr
    assert _builds(fake / "podman.log") == [["-f", "components/Dockerfile.cpu", "-t", DEFAULT_IMAGE, "."]]


def test_ci_runs_the_readme_test_command(repo_root):
    assert "./build.sh test" in (repo_root / ".ci" / "run").read_text()
    readme = (repo_root / "README.md").read_text()
    assert "./build.sh demo" in readme and "./build.sh test" in readme
