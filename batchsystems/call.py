"""Run one worker call: ``python -m flow.batchsystems.call module:function arg...``.

Imports ``function`` from ``module``, calls it with the string arguments and exits with its int
return value (``None`` counts as 0). A ``SystemExit`` raised by the call passes its code through; any
other exception prints its traceback to stderr and exits 1. External batch systems run this as the
job's command (see :meth:`flow.batchsystems.abstract.WorkerCall.argv`); the local pool worker reuses
:func:`resolve` and :func:`call_function` so that both paths give the same exit codes.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable, Sequence

Function = Callable[..., object]


def resolve(spec: str) -> Function:
    """Import ``"package.module:name"`` (``name`` may be dotted, e.g. ``Class.method``)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"worker call {spec!r} is not of the form 'package.module:function'")
    target: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"worker call {spec!r} names a {type(target).__name__}, not a function")
    return target


def system_exit_code(exc: SystemExit) -> int:
    """The exit status Python would give for ``exc`` (``sys.exit("message")`` prints and is 1)."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def result_code(spec: str, result: object) -> int:
    """The exit code for a call's return value: an int as is, ``None`` as 0, anything else 1."""
    if result is None:
        return 0
    if isinstance(result, int):
        return int(result)
    print(f"worker call {spec} returned {result!r}, not an int exit code", file=sys.stderr)
    return 1


def call_function(
    spec: str, args: Sequence[str], resolver: Callable[[str], Function] = resolve
) -> int:
    """Resolve and call ``spec(*args)``; return the exit code (never raises)."""
    try:
        result = resolver(spec)(*args)
    except SystemExit as exc:
        return system_exit_code(exc)
    except BaseException:  # noqa: BLE001 - whatever the call raises is its failure, reported as 1
        traceback.print_exc()
        return 1
    return result_code(spec, result)


def flush_std_streams() -> None:
    """Flush sys.stdout and sys.stderr, ignoring streams that are closed or broken."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(
            "usage: python -m flow.batchsystems.call package.module:function [arg ...]",
            file=sys.stderr,
        )
        return 2
    code = call_function(args[0], args[1:])
    flush_std_streams()
    return code


if __name__ == "__main__":
    sys.exit(main())
