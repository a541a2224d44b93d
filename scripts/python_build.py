"""How a Python interpreter was built, as far as it affects speed: `scripts/pick-python` runs it with each candidate
to choose the one `make` builds .venv with, and the benchmarks record it (`machine.python_build`).

    python3.11 scripts/python_build.py   # prints "optimised|plain <executable>"; fails below 3.11 or without venv

Standard library only: it runs before .venv exists.
"""

from __future__ import annotations

import sys
import sysconfig


def build() -> str:
    """Return "static" (libpython linked into the executable, as distributions build it) or "shared" (pyenv's default,
    every call inside the interpreter through the dynamic linker's tables), with "+pgo" if it was configured with
    --enable-optimizations (profile-guided); "unknown" where /proc/self/maps cannot tell (not Linux)."""
    try:
        with open("/proc/self/maps") as maps:
            linked = "shared" if any("libpython" in line for line in maps) else "static"
    except OSError:
        linked = "unknown"
    guided = "--enable-optimizations" in (sysconfig.get_config_var("CONFIG_ARGS") or "")
    return linked + ("+pgo" if guided else "")


def optimised(built: str) -> bool:
    """Whether a build of `build()` is one to prefer: linked statically or profile-guided."""
    return built.startswith("static") or built.endswith("+pgo")


if __name__ == "__main__":
    if sys.version_info < (3, 11):  # noqa: UP036 - run by every candidate, older ones too
        raise SystemExit("Labes needs Python 3.11 or newer")
    import ensurepip  # noqa: F401 - Debian ships it apart (python3.X-venv): without it no venv with pip
    import venv  # noqa: F401

    print("optimised" if optimised(build()) else "plain", sys.executable)
