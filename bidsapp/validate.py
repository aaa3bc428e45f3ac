"""Validate: run the official BIDS validator (bids-validator-deno) on a dataset."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from basicseg.errors import INVALID_BIDS, BasicsegError

log = logging.getLogger("basicseg")
VALIDATOR = "bids-validator-deno"


def validator_report(dataset: Path, timeout: float = 600) -> dict:
    """The validator's JSON report (issues and summary)."""
    # beside this interpreter first: a venv's basicseg called without activating the venv
    exe = shutil.which(VALIDATOR, path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))
    if exe is None:
        raise FileNotFoundError(f"{VALIDATOR} is not installed (pip install bids-validator-deno)")
    env = dict(os.environ)
    # deno caches under $HOME; a read-only container with a foreign UID has no writable HOME
    env.setdefault("DENO_DIR", str(Path(tempfile.gettempdir()) / "basicseg-deno"))
    result = subprocess.run([exe, str(dataset), "--format", "json"], capture_output=True, text=True,
                            timeout=timeout, env=env)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"{VALIDATOR} gave no JSON report (exit {result.returncode}): "
                           f"{result.stderr.strip()[-400:]}") from exc


def errors(report: dict) -> list[dict]:
    return [i for i in report.get("issues", {}).get("issues", []) if i.get("severity") == "error"]


def run_validator(dataset: Path) -> None:
    """Raise exit code 16 when the dataset has validation errors; warnings are logged."""
    try:
        report = validator_report(dataset)
    except (FileNotFoundError, RuntimeError, subprocess.TimeoutExpired) as exc:
        log.warning("BIDS validation not run: %s", exc)
        return
    found = errors(report)
    if found:
        lines = [f"  {i.get('code')}: {i.get('location', '')} {i.get('issueMessage') or ''}".rstrip()
                 for i in found[:10]]
        more = f"\n  ... and {len(found) - 10} more" if len(found) > 10 else ""
        raise BasicsegError(f"{dataset} is not valid BIDS ({len(found)} error(s)); fix them or pass "
                            "--skip-bids-validation:\n" + "\n".join(lines) + more, INVALID_BIDS)
    n_warn = sum(1 for i in report.get("issues", {}).get("issues", []) if i.get("severity") == "warning")
    log.info("BIDS validation passed (%d warning(s))", n_warn)
