"""Developer sessions: ``nox`` runs lint and tests.

``nox -s tests -- -m "not slow"`` leaves out the tests that read the real ISBI 2012 stacks.
"""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.default_venv_backend = "venv"


@nox.session
def tests(session: nox.Session) -> None:
    # The CPU build first: a bare "torch" requirement would pull the newest CUDA build.
    session.install("torch==2.13.0")
    session.install("-e", ".[test,ray,tensorboard,mlflow,bioimageio]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
