"""A normal install, as a new user gets it: build the wheel, install it into a fresh virtual environment and
use it from an empty directory, far from the source tree (issue 13.1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETTINGS = ("DATABASE_URL", "FLOWS_DIR", "OMARI_API_BASE_URL", "OMARI_MERCHANT_KEY", "LOG_FORMAT", "LOG_LEVEL")
DEMO_INPUT = "pay\nBK-SLYKER-TECH-20251023\n50\n1\n263771234567\n123456\n"


def run(args: list, cwd: Path, env: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A virtual environment holding the built wheel. Offline: the wheel is built with the installed
    setuptools and its dependencies come from this interpreter's site-packages (--system-site-packages)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        setuptools = tuple(int(part) for part in version("setuptools").split(".")[:1])
        version("wheel")
    except PackageNotFoundError:
        setuptools = (0,)
    if setuptools < (77,):
        pytest.skip("building offline needs setuptools>=77 and wheel here: pip install -e '.[test]'")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    anywhere = shutil.ignore_patterns(".git", "__pycache__", "build", "dist", "*.egg-info", "*.db", "*.db-*", ".venv")

    def ignore(folder: str, names: list[str]) -> set[str]:  # the suites, not flows/tests/ (shipped data)
        return set(anywhere(folder, names)) | ({"tests", "bench"} if Path(folder) == REPO else set())

    shutil.copytree(REPO, source, ignore=ignore)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INDEX": "1"}
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp / "dist"),
            str(source),
        ],
        tmp,
        env,
    )
    wheel = next((tmp / "dist").glob("convoflow-*.whl"))
    run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp / "venv")], tmp, env)
    run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "--no-deps", str(wheel)], tmp, env)
    return tmp / "venv" / "bin"


@pytest.fixture
def user(installed, tmp_path):
    """An empty working directory and an environment with no convoflow settings of the developer's."""
    home = tmp_path / "empty"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and k != "PYTHONPATH"}
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"
    return home, env


@pytest.mark.slow
def test_the_wheel_runs_from_its_own_files(installed, user):
    home, env = user
    where = run(
        [
            str(installed / "python"),
            "-c",
            "import cli, engine, flows, schemas; "
            "print(cli.__file__, engine.__file__, flows.__file__, schemas.__file__)",
        ],
        home,
        env,
    )
    for path in where.stdout.split():
        assert str(installed.parent) in path, f"imported from outside the virtual environment: {path}"
    version = run([str(installed / "flows"), "--version"], home, env)
    assert version.stdout.strip() == "flows, version 0.1.0"


@pytest.mark.slow
def test_init_then_validate_and_test_in_a_new_project(installed, user):
    home, env = user
    run([str(installed / "flows"), "init", "shop"], home, env)
    checked = run([str(installed / "flows"), "validate"], home / "shop", env)
    assert "flows/main_menu.yaml: ok" in checked.stdout
    assert "flows/tour_enquiry.yaml: ok" in checked.stdout
    tested = run([str(installed / "flows"), "test"], home / "shop", env)
    assert "2 tests: 2 passed, 0 failed" in tested.stdout


@pytest.mark.slow
def test_demo_takes_a_payment_from_an_empty_directory(installed, user):
    home, env = user
    done = run([str(installed / "flows"), "demo", "--otp", "123456"], home, env, stdin=DEMO_INPUT)
    assert "main_menu v1" in done.stdout and "omari_payment v1" in done.stdout

    assert "New balance: $250.00" in done.stdout, done.stdout
    assert (home / "convoflow-demo.db").exists()  # its own file: DATABASE_URL's default is left alone
    assert not (home / "convoflow.db").exists()


@pytest.mark.slow
def test_the_shipped_flows_and_their_tests_are_in_the_wheel(installed, user):
    home, env = user
    where = run(
        [str(installed / "python"), "-c", "import flows, os; print(os.path.dirname(flows.__file__))"], home, env
    )
    shipped = {**env, "FLOWS_DIR": where.stdout.strip()}
    validated = run([str(installed / "flows"), "validate"], home, shipped).stdout
    assert "omari_payment.yaml: ok\n" in validated and validated.endswith("paynow_payment.yaml: ok\n")
    tested = run([str(installed / "flows"), "test"], home, shipped)
    assert " passed, 0 failed" in tested.stdout
