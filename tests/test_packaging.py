"""Installing like the field's tools (issue 33): the built-in challenges by name, a spec's relative data
root, one version string, a valid citation, and the wheel run from an empty folder outside the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest
import yaml

import unetbench
from unetbench.challenges.builtin import builtin_folder, builtin_specs
from unetbench.challenges.loading import load_spec
from unetbench.cli import main

from .helpers import CHALLENGES, QUICKSTART, REPO, tiny_spec, write_spec

# The Citation File Format 1.2.0 schema (citation-file-format.github.io/1.2.0/schema.json, CC-BY-4.0), as
# cffconvert 2.0.0 ships it: cffconvert itself pins jsonschema 3, which the Ray and MLflow extras outgrow.
CFF_SCHEMA = Path(__file__).parent / "data" / "cff-1.2.0-schema.json"


def _cff_problems(document: dict) -> list[str]:
    schema = json.loads(CFF_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def test_the_citation_is_valid_cff_and_names_this_version():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert _cff_problems(citation) == []
    assert citation["version"] == unetbench.__version__
    assert citation["license"] == "MIT"
    dois = {reference.get("doi") for reference in citation["references"]}
    assert "10.1007/978-3-319-24574-4_28" in dois  # the paper it reproduces
    # the check finds a broken one: no title, a licence that SPDX does not know
    broken = {key: value for key, value in citation.items() if key != "title"} | {"license": "MIT-ish"}
    problems = _cff_problems(broken)
    assert any("'title' is a required property" in p for p in problems)
    assert any(p.startswith("license") for p in problems)


def test_one_version_string(tiny_run, capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"unetbench {unetbench.__version__}"
    assert metadata.version("unetbench") == unetbench.__version__  # reinstall after changing it
    record = json.loads((tiny_run / "record.json").read_text())
    assert record["provenance"]["versions"]["unetbench"] == unetbench.__version__
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## {unetbench.__version__} " in changelog  # the history names the version the package has


def test_the_built_in_challenges_are_the_repository_specs():
    assert builtin_folder() == CHALLENGES  # a checkout reads challenges/ itself: no second copy
    assert list(builtin_specs()) == sorted(p.stem for p in CHALLENGES.glob("*.toml"))
    spec = load_spec("quickstart")
    assert spec == load_spec(QUICKSTART)  # the same settings (where a spec came from is not compared)
    assert spec.source == f"built-in quickstart (unetbench {unetbench.__version__})"
    assert load_spec(CHALLENGES / "em.toml").source == str((CHALLENGES / "em.toml").resolve())


def test_a_path_wins_over_a_built_in_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_spec(tmp_path / "quickstart", tiny_spec(iterations=3))
    mine = load_spec("quickstart")
    assert mine.training.iterations == 3 and mine.source == str(tmp_path / "quickstart")


def test_an_unknown_name_is_one_line_with_the_built_in_names(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    names = ", ".join(builtin_specs())
    for argv in (["run", "quickstrat"], ["ablate", "quickstrat", "--no-weightmap"], ["spec", "show", "x"]):
        assert main(argv) == 1
        captured = capsys.readouterr()
        assert captured.err.count("\n") == 1 and f"built-in: {names}" in captured.err, argv
        assert captured.out == ""
    assert main(["run", "nowhere/spec.toml"]) == 1  # meant as a file: the file is missing, and the names
    said = capsys.readouterr().err
    assert said == f"error: nowhere/spec.toml: no such file (built-in challenges, by name: {names})\n"
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_spec_list_and_copy(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["spec", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(builtin_specs())
    assert any(line.split()[1] == "isbi2012" and "ISBI 2012" in line for line in lines)
    assert main(["spec", "copy", "em-cpu"]) == 0
    assert (tmp_path / "em-cpu.toml").read_bytes() == (CHALLENGES / "em-cpu.toml").read_bytes()
    (tmp_path / "mine").mkdir()
    assert main(["spec", "copy", "em", "mine"]) == 0 and (tmp_path / "mine" / "em.toml").is_file()
    capsys.readouterr()
    for argv, says in (
        (["spec", "copy", "em-cpu"], "em-cpu.toml: exists already"),
        (["spec", "copy", "emm"], "'emm' is not a built-in challenge; built-in: dic-hela, em,"),
        (["spec", "copy", "em", "no/such/em.toml"], "no/such: no such folder"),
    ):
        assert main(argv) == 1
        assert says in capsys.readouterr().err, argv
    assert (tmp_path / "em-cpu.toml").read_bytes() == (CHALLENGES / "em-cpu.toml").read_bytes()


def test_a_relative_data_root_is_read_against_the_spec_folder(tmp_path, monkeypatch):
    folder = tmp_path / "specs"
    folder.mkdir()
    spec_file = write_spec(folder / "mine.toml", load_spec(CHALLENGES / "em-cpu.toml"))
    text = spec_file.read_text().replace("[data]\n", '[data]\nroot = "../data/isbi"\n', 1)
    spec_file.write_text(text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # a Ray worker or a resume started in another folder
    relative = os.path.relpath(spec_file, elsewhere)  # ../specs/mine.toml
    assert load_spec(relative).data.root == str(tmp_path / "data" / "isbi")
    spec_file.write_text(text.replace("../data/isbi", str(tmp_path / "absolute")))
    assert load_spec(spec_file).data.root == str(tmp_path / "absolute")  # an absolute one stays


def _fresh_environment(where: Path) -> Path:
    """A new virtual environment that sees this one's installed dependencies (a path line, which adds no
    ``.pth`` of this environment, so not its editable unetbench) and nothing of the checkout: what a user
    has after ``pip install torch`` and the wheel's requirements, without downloading them again."""
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


@pytest.mark.slow
def test_the_wheel_runs_from_an_empty_folder(tmp_path):
    """The must-hold of issue 33: `python -m build`, the wheel in a fresh environment outside the checkout,
    and `spec list`, `run quickstart` and `ablate quickstart` in an empty folder."""
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--outdir", dist, REPO], check=True, capture_output=True)
    wheel = next(dist.glob("unetbench-*.whl"))
    assert wheel.name.startswith(f"unetbench-{unetbench.__version__}-")
    assert next(dist.glob("unetbench-*.tar.gz"))
    python = _fresh_environment(tmp_path / "venv")
    install = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel]
    subprocess.run(install, check=True, capture_output=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "UNETBENCH"))}
    env |= {"OMP_NUM_THREADS": "1", "PATH": f"{python.parent}{os.pathsep}{env['PATH']}"}

    def unetbench_(*args: str) -> str:
        done = subprocess.run(["unetbench", *args], cwd=empty, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run(
        [python, "-c", "import unetbench; print(unetbench.__file__)"],
        cwd=empty,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's, not the checkout's
    assert unetbench_("--version").strip() == f"unetbench {unetbench.__version__}"
    assert [line.split()[0] for line in unetbench_("spec", "list").splitlines()] == list(builtin_specs())
    unetbench_("run", "quickstart", "--iterations", "20", "--no-progress")
    reports = list((empty / "reports" / "quickstart").glob("*.md"))
    assert len(reports) == 1
    record = json.loads(next((empty / "runs" / "quickstart").glob("*/record.json")).read_text())
    assert record["spec_source"] == f"built-in quickstart (unetbench {unetbench.__version__})"
    assert record["provenance"]["versions"]["unetbench"] == unetbench.__version__
    assert f"- spec: built-in quickstart (unetbench {unetbench.__version__})" in reports[0].read_text()
    unetbench_("ablate", "quickstart", "--no-weightmap", "--iterations", "10", "--no-progress")
    assert list((empty / "reports" / "quickstart").glob("ablation-*.md"))
