"""The wheel carries the challenges: ``challenges/*.toml`` is copied into ``unetbench/builtin_challenges/``
when the package is built, so ``challenges/`` stays the one place the specs are written (issue 33;
:mod:`unetbench.challenges.builtin` reads either). Everything else about the build is in pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildWithChallenges(build_py):
    """``build_py`` and then the built-in specs beside the modules (not for an editable install, which
    reads the checkout's ``challenges/``)."""

    def run(self):
        super().run()
        if self.editable_mode:
            return
        specs = sorted(Path(__file__).parent.joinpath("challenges").glob("*.toml"))
        if not specs:
            raise SystemExit("setup.py: no challenges/*.toml to package; build from a checkout or an sdist")
        target = Path(self.build_lib, "unetbench", "builtin_challenges")
        self.mkpath(str(target))
        for spec in specs:
            self.copy_file(str(spec), str(target / spec.name))


setup(cmdclass={"build_py": BuildWithChallenges})
