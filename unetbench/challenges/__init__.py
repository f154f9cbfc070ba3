"""Challenge specs as unetbench reads them: a file checked against the data sets and metrics that exist
(:mod:`unetbench.challenges.loading`). Everything reads specs through :func:`load_spec` and changes them
through :func:`apply_overrides`."""

from unetbench.challenges.loading import apply_overrides, check_spec, load_spec

__all__ = ["apply_overrides", "check_spec", "load_spec"]
