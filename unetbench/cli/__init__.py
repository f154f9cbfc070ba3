"""The ``unetbench`` command line.

User errors (a bad spec, missing data, a wrong option value) print one line ``error: ...`` on stderr and
exit with status 1; the parser's own (an unknown option, a value of the wrong type) one line too, with
status 2; a traceback means a bug in unetbench. The commands are in one module per group
(:mod:`unetbench.cli.run`, :mod:`~unetbench.cli.ablate`, :mod:`~unetbench.cli.evaluate`,
:mod:`~unetbench.cli.predict`, :mod:`~unetbench.cli.data`, :mod:`~unetbench.cli.spec`), each registered on
the apps of :mod:`unetbench.cli.app` when imported here.
"""

import importlib
import sys

import typer

from unetbench.cli.app import app
from unetbench.errors import PeerExit, RunInterrupted, UserError

# the commands, registered on the apps as their modules are imported, in the order --help lists them
for _group in ("run", "ablate", "evaluate", "predict", "spec", "data"):
    importlib.import_module(f"unetbench.cli.{_group}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turning user errors into one line and exit status 1, and the
    option parser's (an unknown option, a value of the wrong type) into one line and exit status 2."""
    from unetbench.system.interrupts import exit_status

    try:
        # not standalone: the parser's errors come here instead of a boxed message (typer's rich box)
        status = app(args=argv, prog_name="unetbench", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except typer.TyperException as err:  # the parser's (an unknown option, a bad value): status 2
        context = getattr(err, "ctx", None)
        where = f" (see `{context.command_path} --help`)" if context is not None else ""
        message = err.format_message().replace("Value error, ", "")  # pydantic's word, in click's line
        print(f"error: {message}{where}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    except typer.Abort:  # end of input at a prompt
        print("aborted", file=sys.stderr)
        return 1
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except PeerExit as peer:  # another process of the same torchrun run has said why
        return peer.status
    except RunInterrupted as stopped:
        print(str(stopped), file=sys.stderr)
        return exit_status(stopped.signal_name)
    except KeyboardInterrupt as err:
        print("interrupted; no file was left half-written", file=sys.stderr)
        return exit_status(str(err) or None)
    except SystemExit as done:  # typer.Exit and --version
        return done.code if isinstance(done.code, int) else int(done.code is not None)
