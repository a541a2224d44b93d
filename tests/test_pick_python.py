"""scripts/pick-python: the interpreter `make` builds .venv with — an optimised build when there is one."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def python_build():
    """scripts/python_build.py as a module (it is not in a package: it runs before .venv exists)."""
    spec = importlib.util.spec_from_file_location("python_build", SCRIPTS / "python_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pick(candidates: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPTS / "pick-python")], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHON_CANDIDATES": candidates})


def fake(directory: Path, name: str, answer: str | None) -> str:
    """A stand-in interpreter that answers python_build.py with `answer`, or fails as one too old or without venv."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + (f"echo '{answer}'\n" if answer else "exit 1\n"))
    path.chmod(0o755)
    return str(path)


def test_an_optimised_build_is_preferred_to_the_first_plain_one(tmp_path):
    plain = fake(tmp_path, "python3.13", "plain /opt/pyenv/3.13/bin/python3.13")
    unusable = fake(tmp_path, "python3.12", None)
    optimised = fake(tmp_path, "python3.11", "optimised /usr/bin/python3.11")

    done = pick(f"{plain} {unusable} {optimised}")

    assert done.returncode == 0 and done.stdout == "/usr/bin/python3.11\n"


def test_without_an_optimised_build_the_first_usable_one_is_taken(tmp_path):
    unusable = fake(tmp_path, "python3.13", None)
    first = fake(tmp_path, "python3.12", "plain /opt/a/python3.12")
    second = fake(tmp_path, "python3.11", "plain /opt/b/python3.11")

    done = pick(f"{unusable} {tmp_path}/absent {first} {second}")

    assert done.returncode == 0 and done.stdout == "/opt/a/python3.12\n"


def test_no_usable_interpreter_prints_nothing_and_fails(tmp_path):
    done = pick(f"{fake(tmp_path, 'python3.10', None)} {tmp_path}/absent")

    assert done.returncode == 1 and done.stdout == ""


def test_a_real_interpreter_names_itself_and_its_build():
    # This one runs the tests, so it is 3.11 or newer; whether it can make a venv depends on the machine.
    done = subprocess.run([sys.executable, str(SCRIPTS / "python_build.py")], capture_output=True, text=True,
                          timeout=60, check=False)
    if done.returncode != 0:
        pytest.skip(f"this interpreter cannot make a venv with pip: {done.stderr.strip()[-200:]}")
    kind, executable = done.stdout.split()
    assert executable == sys.executable

    module = python_build()
    built = module.build()
    assert built.split("+")[0] in ("static", "shared", "unknown")
    assert kind == ("optimised" if module.optimised(built) else "plain")


def test_the_build_agrees_with_the_dynamic_linker():
    # Read from the running process's memory map; the dynamic linker's list of the executable's libraries says the same.
    if shutil.which("ldd") is None or not Path("/proc/self/maps").exists():
        pytest.skip("needs Linux and ldd")
    libraries = subprocess.run(["ldd", os.path.realpath(sys.executable)], capture_output=True, text=True, timeout=60,
                               check=False).stdout
    assert python_build().build().split("+")[0] == ("shared" if "libpython" in libraries else "static")
