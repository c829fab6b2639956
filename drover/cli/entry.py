"""The ``drover`` console script (and ``python -m drover``).

``drover apply -f FILE…`` with nothing else on the line, the command a deploy script runs most, goes
straight to ``applycore.apply_files`` without loading click: importing click and parsing the line through it
cost about a fifth of such a command's CPU (≈ 25 ms). Anything else (another command, any other option, a
file name that looks like an option, shell completion) goes to the click group (``cli/main.py``) as before.
The fast path prints the same lines and exits with the same codes as the click command (tested side by
side in tests/integration/test_cli_entry.py).
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

FLAGS = ("-f", "--filename")


def fast_apply_files(args: Sequence[str]) -> tuple[str, ...] | None:
    """The files of ``apply -f F [-f F …]`` (``--filename`` too, ``-`` for stdin); None for any other line."""
    if len(args) < 3 or args[0] != "apply" or len(args) % 2 == 0:
        return None
    files: list[str] = []
    for flag, value in zip(args[1::2], args[2::2], strict=True):
        if flag not in FLAGS or not value or (value.startswith("-") and value != "-"):
            return None
        files.append(value)
    return tuple(files)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    files = fast_apply_files(args)
    if files is None or os.environ.get("_DROVER_COMPLETE"):
        from drover.cli.main import main as click_main

        click_main(argv)
        return
    sys.exit(apply(files))


def _error(line: str) -> None:
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()


def apply(files: tuple[str, ...]) -> int:
    """``drover apply -f …`` as the click command does it, with its exit code (``main.DroverGroup.main``)."""
    from drover.cli.applycore import apply_files
    from drover.cli.call import checked_target
    from drover.cli.errors import CliError

    try:
        try:
            for line in apply_files(files, None, checked_target):
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
        except (EOFError, KeyboardInterrupt):
            sys.stderr.write("\n")  # as click: the blank line closes the terminal's ^C echo
            _error("interrupted")
            return 130
    except CliError as exc:
        for line in exc.lines or ["failed"]:
            _error(line)
        return exc.code
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        # As click: a closed pipe on stdout ends the command quietly (exit 1). What is still buffered goes to
        # /dev/null (Python's documented way), not into a second BrokenPipeError when the interpreter exits.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0
