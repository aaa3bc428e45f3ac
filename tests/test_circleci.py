"""The CircleCI configuration: its job graph, its filters, and what its shell steps really do.

CircleCI itself cannot run here, so the graph is checked by simulating CircleCI's filter rules,
the schema by check-jsonschema's vendored CircleCI schema (when installed), and the deploy and
participant steps by running their shell text with a fake `docker` that records its calls.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".circleci" / "config.yml"
VERSION = (REPO / "version").read_text().strip()
TEST_JOBS = {"test_version", "test_participant", "test_group"}


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _workflow_jobs(config: dict) -> dict[str, dict]:
    (workflow,) = config["workflows"].values()
    jobs = {}
    for entry in workflow["jobs"]:
        if isinstance(entry, str):
            jobs[entry] = {}
        else:
            ((name, spec),) = entry.items()
            jobs[name] = spec or {}
    return jobs


def _matches(pattern, value: str) -> bool:
    """CircleCI filter semantics: a list of exact names or /regex/ (the whole value must match)."""
    patterns = pattern if isinstance(pattern, list) else [pattern]
    for p in patterns:
        p = str(p)
        if p.startswith("/") and p.endswith("/") and len(p) > 1:
            if re.fullmatch(p[1:-1], value):
                return True
        elif p == value:
            return True
    return False


def _runs_alone(spec: dict, *, branch: str | None = None, tag: str | None = None) -> bool:
    """Whether a workflow job's own filters let it run for a branch push or a tag push."""
    filters = spec.get("filters", {})
    if tag is not None:  # tag pushes run only jobs with a matching tags filter
        tags = filters.get("tags", {})
        if "only" not in tags or not _matches(tags["only"], tag):
            return False
        return "ignore" not in tags or not _matches(tags["ignore"], tag)
    branches = filters.get("branches", {})
    if "only" in branches and not _matches(branches["only"], branch):
        return False
    return "ignore" not in branches or not _matches(branches["ignore"], branch)


def _running(config: dict, **push) -> set[str]:
    """Jobs that run for a push: their filters allow it and every required job runs too."""
    jobs = _workflow_jobs(config)
    running: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, spec in jobs.items():
            if name in running or not _runs_alone(spec, **push):
                continue
            if all(r in running for r in spec.get("requires", [])):
                running.add(name)
                changed = True
    return running


def _ancestors(config: dict, name: str) -> set[str]:
    jobs = _workflow_jobs(config)
    seen: set[str] = set()
    todo = list(jobs[name].get("requires", []))
    while todo:
        r = todo.pop()
        if r not in seen:
            seen.add(r)
            todo.extend(jobs[r].get("requires", []))
    return seen


def _run_commands(config: dict, job: str) -> list[str]:
    """Shell text of every `run` step of a job, commands of `commands:` expanded."""
    out = []
    steps = list(config["jobs"][job]["steps"])
    while steps:
        step = steps.pop(0)
        if isinstance(step, str):
            if step in config.get("commands", {}):
                steps[:0] = config["commands"][step]["steps"]
            continue
        ((kind, body),) = step.items()
        if kind in config.get("commands", {}):
            steps[:0] = config["commands"][kind]["steps"]
        elif kind == "run":
            out.append(body if isinstance(body, str) else body["command"])
    return out


def _docker_runs(text: str) -> list[str]:
    """Every `docker run ...` invocation, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [m.group(0) for m in re.finditer(r"docker run [^\n]*", joined)]


def test_version_and_jobs(config):
    assert str(config["version"]) == "2.1"
    assert set(_workflow_jobs(config)) == {"build", "deploy"} | TEST_JOBS
    for name in _workflow_jobs(config):
        assert name in config["jobs"], f"workflow names undefined job {name}"


def test_graph_is_build_then_tests_then_deploy(config):
    jobs = _workflow_jobs(config)
    assert not jobs["build"].get("requires")
    for name in TEST_JOBS:
        assert "build" in _ancestors(config, name), name
    assert _ancestors(config, "deploy") >= {"build"} | TEST_JOBS
    assert "test_participant" in _ancestors(config, "test_group")
    assert jobs["deploy"].get("context") in (["dockerhub"], "dockerhub")


@pytest.mark.parametrize(
    "push, expected",
    [
        ({"branch": "main"}, {"build", "deploy"} | TEST_JOBS),
        ({"branch": "feature/x"}, {"build"} | TEST_JOBS),
        ({"tag": f"v{VERSION}"}, {"build", "deploy"} | TEST_JOBS),
        ({"tag": VERSION}, {"build", "deploy"} | TEST_JOBS),
        ({"tag": "1.2.3rc1"}, {"build", "deploy"} | TEST_JOBS),
        ({"tag": "paper-figures"}, {"build"} | TEST_JOBS),
    ],
)
def test_filters(config, push, expected):
    assert _running(config, **push) == expected


def test_build_uses_a_cached_image(config):
    build = config["jobs"]["build"]
    kinds = [next(iter(s)) if isinstance(s, dict) else s for s in build["steps"]]
    assert "restore_cache" in kinds and "save_cache" in kinds and "persist_to_workspace" in kinds
    assert kinds.index("restore_cache") < kinds.index("save_cache")
    text = "\n".join(_run_commands(config, "build"))
    assert "docker load" in text and "--cache-from" in text and "docker save" in text
    restore = next(s["restore_cache"] for s in build["steps"] if isinstance(s, dict) and "restore_cache" in s)
    save = next(s["save_cache"] for s in build["steps"] if isinstance(s, dict) and "save_cache" in s)
    # the saved key is found again by the first restore key, or by a prefix of it
    assert any(save["key"].startswith(k) for k in restore["keys"])
    for job in TEST_JOBS | {"deploy"}:
        assert "docker load" in "\n".join(_run_commands(config, job)), job


def test_every_container_run_is_read_only_as_a_foreign_user(config):
    texts = {job: "\n".join(_run_commands(config, job)) for job in TEST_JOBS}
    runs = [r for t in texts.values() for r in _docker_runs(t)]
    assert runs
    for r in runs:
        assert "--read-only" in r, r
        if "--entrypoint" not in r:
            assert "--user" in r, r
    assert any("--version" in r for r in _docker_runs(texts["test_version"]))
    assert any(" participant" in r for r in _docker_runs(texts["test_participant"]))
    assert any(" group" in r for r in _docker_runs(texts["test_group"]))
    for r in _docker_runs(texts["test_participant"]) + _docker_runs(texts["test_group"]):
        assert ":/data:ro" in r, "the input dataset is mounted read-only"


def test_schema_with_check_jsonschema():
    exe = shutil.which("check-jsonschema")
    if exe is None:
        pytest.skip("check-jsonschema not installed (pip install check-jsonschema)")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.circle-ci", str(CONFIG)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the shell steps, run for real against a fake docker ------------------------------------

@pytest.fixture()
def fake_docker(tmp_path):
    """A `docker` on PATH that appends its arguments to a log and answers `--version` runs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "docker.log"
    script = bindir / "docker"
    script.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n[ "$1" = login ] && cat >/dev/null\nexit 0\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bindir, log


def _deploy(config, fake_docker, **env):
    bindir, log = fake_docker
    (text,) = [t for t in _run_commands(config, "deploy") if "docker push" in t]
    full_env = {"PATH": f"{bindir}:{os.environ['PATH']}", "IMAGE": "bids/basicseg",
                "DOCKER_USER": "u", "DOCKER_PASS": "p"}
    full_env.update(env)
    full_env = {k: v for k, v in full_env.items() if v is not None}
    proc = subprocess.run(["bash", "-c", text], cwd=REPO, env=full_env,
                          capture_output=True, text=True)
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, [c for c in calls if c.startswith("push")]


def test_deploy_main_pushes_unstable(config, fake_docker):
    proc, pushes = _deploy(config, fake_docker, CIRCLE_BRANCH="main")
    assert proc.returncode == 0, proc.stderr
    assert pushes == ["push bids/basicseg:unstable"]


@pytest.mark.parametrize("tag", [VERSION, f"v{VERSION}"])
def test_deploy_tag_pushes_version_and_latest(config, fake_docker, tag):
    proc, pushes = _deploy(config, fake_docker, CIRCLE_TAG=tag)
    assert proc.returncode == 0, proc.stderr
    assert pushes == [f"push bids/basicseg:{VERSION}", "push bids/basicseg:latest"]


def test_deploy_refuses_a_tag_that_is_not_the_version(config, fake_docker):
    proc, pushes = _deploy(config, fake_docker, CIRCLE_TAG="99.99.99")
    assert proc.returncode != 0 and pushes == []


def test_deploy_without_credentials_skips(config, fake_docker):
    proc, pushes = _deploy(config, fake_docker, CIRCLE_BRANCH="main", DOCKER_PASS=None)
    assert proc.returncode == 0 and pushes == []


def test_participant_step_runs_every_participant(config, fake_docker, tmp_path):
    tsv = REPO / "demo" / "ds-demo" / "participants.tsv"
    if not tsv.is_file():
        pytest.skip("demo/ds-demo not present")
    bindir, log = fake_docker
    (text,) = [t for t in _run_commands(config, "test_participant") if " participant" in t]
    # a participant with nothing to segment (18) does not fail the step; another failure does
    fail_on = tsv.read_text().splitlines()[1].split("\t")[0].removeprefix("sub-")
    script = bindir / "docker"
    base = script.read_text()
    script.write_text(base.replace("exit 0", f'case "$*" in *"--participant-label {fail_on} "*) exit 18;; esac\nexit 0'))
    text = text.replace("/tmp/workspace", str(tmp_path / "ws"))
    proc = subprocess.run(["bash", "-c", text], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": f"{bindir}:{os.environ['PATH']}", "IMAGE": "bids/basicseg"})
    assert proc.returncode == 0, proc.stderr
    lines = tsv.read_text().splitlines()
    col = lines[0].split("\t").index("participant_id")
    subjects = [ln.split("\t")[col] for ln in lines[1:] if ln.strip()]
    runs = [c for c in log.read_text().splitlines() if c.startswith("run")]
    labels = [re.search(r"--participant-label (\S+)", r).group(1) for r in runs]
    assert labels == [s.removeprefix("sub-") for s in subjects]
    script.write_text(base.replace("exit 0", f'case "$*" in *"--participant-label {fail_on} "*) exit 1;; esac\nexit 0'))
    log.unlink()
    proc = subprocess.run(["bash", "-c", text], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": f"{bindir}:{os.environ['PATH']}", "IMAGE": "bids/basicseg"})
    assert proc.returncode == 1
    assert len([c for c in log.read_text().splitlines() if c.startswith("run")]) == 1
