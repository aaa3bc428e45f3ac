"""What the container and SLURM tests share: where the setup tools and the demo are, when to skip,
and how to print timings past pytest's capture."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(os.environ.get("BASICSEG_SHARED_TOOLS", REPO.parent / "shared" / "tools"))
DEMO = Path(os.environ.get("BASICSEG_DEMO", REPO / "demo" / "ds-demo"))


def setup_script(name: str, tool: str, what: str) -> Path:
    """The ../shared/tools script that installs and starts ``tool``: skip where it cannot run here (not root,
    neither the tool nor apt-get), fail where it should run but the script or the demo is missing."""
    if os.geteuid() != 0:
        pytest.skip(f"the {what} test needs root (apt-get, and {tool} runs as root here)")
    if shutil.which(tool) is None and shutil.which("apt-get") is None:
        pytest.skip(f"no {tool} and no apt-get to install it")
    script = TOOLS / name
    if not script.is_file():
        pytest.fail(f"{script} is missing: cannot set up {tool} for the {what} test")
    if not DEMO.is_dir():
        pytest.fail(f"{DEMO} is missing: the {what} test runs on the embedded demo dataset")
    return script


def say(request, text: str) -> None:
    """Print past pytest's capture (the timings belong in the CI log)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    (reporter.write_line if reporter is not None else print)(text)
