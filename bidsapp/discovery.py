"""Discovery: which images of a BIDS dataset to segment (pybids), and where their outputs go."""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from basicseg.errors import DATA_ERR, NO_INPUT, NO_MATCH, USAGE, BasicsegError
from basicseg.references import image_stem, split_suffix

log = logging.getLogger("basicseg")

QUERY_KEYS = {"datatype", "suffix", "extension", "subject", "session"}   # accepted even when absent from the dataset
DEFAULT_QUERIES = {"t2w": {"datatype": "anat", "suffix": "T2w", "extension": [".nii.gz", ".nii"]}}
# Never indexed: nothing basicseg reads lives there, and large datasets pay for indexing them.
IGNORE = ("code", "stimuli", "sourcedata", "models", "derivatives", re.compile(r"^\."),
          re.compile(r"sub-[a-zA-Z0-9]+(/ses-[a-zA-Z0-9]+)?/(beh|dwi|eeg|ieeg|meg|perf|func|fmap|pet|micr|nirs)"))


@dataclass(frozen=True)
class ImageJob:
    """One input image and the BIDS names of its outputs."""
    path: Path
    relpath: str             # relative to bids_dir, for sidecars (BIDS URIs) and tables
    subject: str             # label without 'sub-'
    session: str | None
    entities: dict
    prefix: str              # output name stem: the input's entities without its suffix
    centreline: Path | None = None   # its centreline mask, when --centerline names a folder of them
    problem: str | None = None       # found at discovery; the image then fails with this message

    @property
    def suffix(self) -> str:
        return self.entities.get("suffix", "")

    def out_dir(self, output_dir: Path) -> Path:
        parts = [f"sub-{self.subject}"] + ([f"ses-{self.session}"] if self.session else []) + ["anat"]
        return Path(output_dir).joinpath(*parts)

    def output(self, output_dir: Path, name: str) -> Path:
        return self.out_dir(output_dir) / f"{self.prefix}_{name}"


def strip_prefix(label: str, prefix: str) -> str:
    return label[len(prefix):] if label.startswith(prefix) else label


def read_filter_file(path: Path | None) -> dict:
    """The ``--bids-filter-file``: {"t2w": {entity: value, ...}} replacing the default query's keys."""
    queries = {k: dict(v) for k, v in DEFAULT_QUERIES.items()}
    if path is None:
        return queries
    path = Path(path)
    if not path.is_file():
        raise BasicsegError(f"--bids-filter-file {path}: no such file", NO_INPUT)
    try:
        filters = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BasicsegError(f"--bids-filter-file {path}: not valid JSON ({exc})", USAGE) from exc
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise BasicsegError(f"--bids-filter-file {path}: expected {{\"t2w\": {{entity: value}}}}", USAGE)
    unknown = set(filters) - set(queries)
    if unknown:
        raise BasicsegError(f"--bids-filter-file {path}: unknown keys {sorted(unknown)}; known: {sorted(queries)}",
                            USAGE)
    for key, value in filters.items():
        queries[key].update(value)
    return queries


def index(bids_dir: Path, work_dir: Path | None, participant_labels=None):
    """A pybids layout of the selected participants only, indexed in memory: each run (each SLURM task)
    has its own index and nothing is left on disk."""
    from bids import BIDSLayout
    from bids.layout import BIDSLayoutIndexer

    ignore = list(IGNORE)
    if participant_labels:
        ignore.append(re.compile(r"sub-(?!(%s)(\b|_))" % "|".join(map(re.escape, participant_labels))))
    try:
        indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=False)
        return BIDSLayout(str(bids_dir), validate=False, indexer=indexer)
    except PermissionError as exc:
        raise BasicsegError(f"{bids_dir}: cannot read {exc.filename or 'the dataset'} as user {_user()} "
                            f"({exc.strerror})", NO_INPUT) from exc
    except Exception as exc:
        raise BasicsegError(f"{bids_dir}: cannot index as BIDS ({exc})", DATA_ERR) from exc


def _user() -> str:
    import os
    return f"uid {os.getuid()}"


def check_query(layout, query: dict, filter_file: Path | None) -> None:
    """Every key of the query names a BIDS entity (an unknown one is a usage error, exit 64)."""
    known = set(layout.get_entities()) | QUERY_KEYS
    unknown = sorted(set(query) - known)
    if unknown:
        raise BasicsegError(f"--bids-filter-file {filter_file}: unknown entit{'y' if len(unknown) == 1 else 'ies'} "
                            f"{', '.join(unknown)}; valid: {', '.join(sorted(known))}", USAGE)


def discover(bids_dir: Path, work_dir: Path | None = None, participant_labels=None, session_labels=None,
             filter_file: Path | None = None, centreline_dir: Path | None = None) -> list[ImageJob]:
    bids_dir = Path(bids_dir).resolve()
    participant_labels = [strip_prefix(p, "sub-") for p in participant_labels or []]
    session_labels = [strip_prefix(s, "ses-") for s in session_labels or []]
    queries = read_filter_file(filter_file)
    layout = index(bids_dir, work_dir, participant_labels)

    subjects = layout.get_subjects()
    missing = sorted(set(participant_labels) - set(subjects))
    if missing:
        raise BasicsegError(f"participant label(s) not found in {bids_dir}: {', '.join('sub-' + m for m in missing)}",
                            NO_MATCH)
    query = dict(queries["t2w"])
    check_query(layout, query, filter_file)
    if participant_labels:
        query["subject"] = participant_labels
    if session_labels:
        query["session"] = session_labels
    files = layout.get(return_type="object", **query)
    jobs = [dangling_link(_job(bids_dir, f)) for f in files]
    if centreline_dir is not None:
        jobs = [with_centreline(job, Path(centreline_dir)) for job in jobs]
    jobs = refuse_name_clashes(jobs)
    if not jobs:
        what = ", ".join(f"{k}={v}" for k, v in query.items())
        raise BasicsegError(f"no images matched in {bids_dir} ({what})", NO_MATCH)
    return sorted(jobs, key=lambda j: j.relpath)


def _job(bids_dir: Path, bids_file) -> ImageJob:
    path = Path(bids_file.path)
    entities = {k: v for k, v in bids_file.get_entities().items() if isinstance(v, (str, int))}
    prefix, _ = split_suffix(image_stem(path))
    return ImageJob(path=path, relpath=path.relative_to(bids_dir).as_posix(), subject=str(entities["subject"]),
                    session=str(entities["session"]) if entities.get("session") else None,
                    entities=entities, prefix=prefix)


def dangling_link(job: ImageJob) -> ImageJob:
    """The job, with a problem if its file is a link whose target is missing: what a DataLad / git-annex dataset
    holds before its content is got. That image fails with the reason, the others go on (any other unreadable
    file fails when participant.plan first reads it)."""
    if job.path.is_symlink() and not job.path.exists():
        target = os.readlink(job.path)
        hint = ("; its content was not fetched: `datalad get` (or `git annex get`) it first"
                if "annex" in Path(target).parts or ".git" in Path(target).parts else "")
        return replace(job, problem=f"{job.relpath}: a symbolic link to {target}, which does not exist{hint}")
    return job


def refuse_name_clashes(jobs: list[ImageJob]) -> list[ImageJob]:
    """Two inputs whose outputs would share names (``sub-1_T2w.nii`` and ``.nii.gz``; a T2w and a T2starw
    of the same entities) both fail, each naming the other: neither may overwrite the other's outputs."""
    by_name: dict[tuple, list[ImageJob]] = {}
    for job in jobs:
        by_name.setdefault((job.subject, job.session, job.prefix), []).append(job)
    out = []
    for job in jobs:
        clash = [j.relpath for j in by_name[(job.subject, job.session, job.prefix)] if j is not job]
        out.append(replace(job, problem=f"{job.relpath}: its outputs would have the same names as those of "
                                        f"{', '.join(clash)} (outputs are named {job.prefix}_*); select one "
                                        "with --bids-filter-file") if clash else job)
    return out


def with_centreline(job: ImageJob, folder: Path) -> ImageJob:
    try:
        return replace(job, centreline=find_centreline_mask(folder, job))
    except BasicsegError as exc:
        return replace(job, problem=str(exc))


def find_centreline_mask(folder: Path, job: ImageJob) -> Path:
    base = job.out_dir(folder)
    stem = image_stem(job.path)
    for name in (f"{stem}_centerline", f"{stem}_label-centerline_mask", f"{job.prefix}_label-centerline_mask",
                 f"{job.prefix}_desc-centerline_mask"):
        for ext in (".nii.gz", ".nii"):
            if (base / (name + ext)).is_file():
                return base / (name + ext)
    raise BasicsegError(f"{job.relpath}: no centreline mask under {base} "
                        f"(expected {stem}_centerline.nii.gz or {job.prefix}_label-centerline_mask.nii.gz)", NO_INPUT)
