"""Whose report lies at a path: a report never replaces another run's or another ablation's.

A report is named by its run or ablation folder's last name (``<reports>/<challenge>/<name>.md``), so two
runs given ``--out runs/p1/same`` and ``--out runs/p2/same`` would write the same file. Each report's
folder beside it holds its records (a run's ``record.json``; an ablation's bundle), and a run is known by
its first session: when it started, on which host, as which process. A report takes the first of
``<name>.md``, ``<name>-2.md``, ``<name>-3.md``, ... that is its own (the same run; for an ablation, a run
in common) or free: two runs, or two ablations, of one last name keep two reports, and rendering one again
finds its own. A report whose records cannot be read is never taken for one's own.
"""

from __future__ import annotations

from pathlib import Path

from unetbench.errors import UserError
from unetbench.records.run_record import Session

Key = tuple[str, str, int]  # the first session's start, host and process


def session_key(sessions: list[Session]) -> Key | None:
    first = sessions[0] if sessions else None
    return (first.started, first.host, first.pid) if first else None


def run_report_owner(folder: Path) -> Key | None:
    """The run whose record lies in a run report's folder; None where there is none."""
    from unetbench.records.run_folder import RunDir

    if not (folder / RunDir.RECORD).is_file():
        return None
    try:
        return session_key(RunDir(folder).read_record().sessions)
    except UserError:
        return None


def ablation_report_owners(folder: Path) -> set[Key]:
    """The runs whose records lie in an ablation report's bundle."""
    from unetbench.records.run_folder import RunDir

    owners = set()
    for record in sorted(folder.glob(f"records/*/{RunDir.RECORD}")):
        try:
            key = session_key(RunDir(record.parent).read_record().sessions)
        except UserError:
            continue
        if key is not None:
            owners.add(key)
    return owners


def _named(folder: Path, name: str, own) -> Path:
    """``folder/<name>.md``, ``<name>-2.md``, ...: the first that is ``own`` (a test on the report's folder)
    or free; reports are written in that order, so the search stops at the first free one."""
    for index in range(1, 10_000):
        path = folder / (f"{name}.md" if index == 1 else f"{name}-{index}.md")
        if not path.exists() or own(path.with_suffix("")):
            return path
    raise UserError(f"{folder}: 10,000 reports named {name}; give the run or ablation another name")


def run_report_path(folder: Path, name: str, mine: Key | None) -> Path:
    """Where the report of the run ``mine`` (its first session's key) named ``name`` goes in ``folder``."""
    return _named(folder, name, lambda found: mine is not None and run_report_owner(found) == mine)


def ablation_report_path(folder: Path, name: str, mine: set[Key]) -> Path:
    """Where the report of the ablation whose runs are ``mine`` goes in ``folder``."""
    return _named(folder, name, lambda found: bool(ablation_report_owners(found) & mine))


def run_report_of(record) -> Path | None:
    """The report a finished run wrote (under its ``reports_directory``), or None where it has none."""
    mine = session_key(record.sessions)
    path = run_report_path(Path(record.reports_directory) / record.challenge, record.run_id, mine)
    return path if path.is_file() else None
