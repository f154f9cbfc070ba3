"""The built-in challenges: the specs of the repository's ``challenges/`` folder, by name.

A wheel carries them as package data, ``unetbench/builtin_challenges/*.toml``, which ``setup.py`` copies
from ``challenges/`` when it builds the wheel: ``challenges/`` stays the one place the specs are written. A
checkout (or an editable install of one) reads ``challenges/`` itself.

A spec argument (``unetbench run ARG``, ``ablate ARG``, ``spec show ARG``) is a path or a built-in name; a
path wins when both exist, so ``unetbench run em`` in a folder holding a file named ``em`` reads the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from unetbench import __version__
from unetbench.errors import SpecError, UserError

PACKAGED = "builtin_challenges"  # the folder inside the installed package (setup.py writes it)


def builtin_folder() -> Path:
    """Where the built-in specs are: the installed package's copy, else the checkout's ``challenges/``."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / PACKAGED
    return packaged if packaged.is_dir() else package.parent / "challenges"


def builtin_specs() -> dict[str, Path]:
    """Every built-in spec by name (its file name without ``.toml``), in name order."""
    folder = builtin_folder()
    return {path.stem: path for path in sorted(folder.glob("*.toml"), key=lambda path: path.stem)}


@dataclass(frozen=True)
class SpecSource:
    """A spec argument, found: the file to read and, for a built-in challenge, its name."""

    path: Path
    builtin: str | None = None

    def describe(self) -> str:
        """What a record keeps: ``built-in quickstart (unetbench 0.2.0)``, or the file's absolute path."""
        if self.builtin is not None:
            return f"built-in {self.builtin} (unetbench {__version__})"
        return str(self.path.resolve())


def find_spec(argument: str | Path) -> SpecSource:
    """The spec a command-line argument names: an existing path, else a built-in challenge's name.

    Raises :class:`SpecError` for a missing file (an argument with a folder or a suffix was meant as one)
    and :class:`UserError` for an unknown name; both list the built-in names.
    """
    path = Path(argument)
    if path.exists():
        return SpecSource(path)
    specs = builtin_specs()
    if str(argument) in specs:
        return SpecSource(specs[str(argument)], builtin=str(argument))
    names = ", ".join(specs) or "none (this installation carries no challenges/ folder)"
    if path.suffix or len(path.parts) > 1:
        raise SpecError(str(path), "", f"no such file (built-in challenges, by name: {names})")
    raise UserError(
        f"'{argument}' is neither a spec file nor a built-in challenge; built-in: {names} "
        "(`unetbench spec list` says what each is)"
    )
