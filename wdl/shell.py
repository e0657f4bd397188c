"""One bash for the calls of a batch on the host: :class:`BatchShell` (no miniwdl here).

A call's command costs a fresh bash a fork of the worker, an exec and bash's start-up (dynamic
linking, locale): about 1.5 ms of CPU, more than evaluating a small task. The batch's shell
instead runs each call in a subshell of its own, a fork of a small process without an exec,
as miniwdl runs a command: in the working directory, stdin from /dev/null, stdout and stderr
appended to the call's files (``bash ../command >> ../stdout.txt 2>> ../stderr.txt``), the
command file read by bash (sourced by the subshell: ``$0`` names it as for a script), its exit
status that of the subshell (128 + N for a signal N, as a shell reports it).

What a command can tell apart from a fresh bash: ``$$`` is the batch shell's process id, the
same for every call of the batch, ``$BASH_SUBSHELL`` is 1, ``$-`` holds ``c``, and ``return``
outside a function ends the command (as in a sourced file) where a script reports an error and
goes on; what ``$BASH_ENV`` names is read once for the batch. A command
whose text names ``$$`` gets a bash of its own (:func:`shares_shell`), as it may name files
by it; ``$BASHPID`` is each call's own process id either way.
"""

from __future__ import annotations

import os
import subprocess
from types import TracebackType

from flow.wdl.taskdirs import TaskDirs

#: Reads the working directory, stdout, stderr and command file of a call (each ended by a NUL)
#: and writes the call's exit status on a line. The subshell lets go of the protocol (stdin,
#: stdout) and of the loop's variables before it reads the command.
_SERVER = (
    'while IFS= read -r -d "" w && IFS= read -r -d "" o && IFS= read -r -d "" e'
    ' && IFS= read -r -d "" c; do'
    ' ( cd -- "$w" && exec </dev/null >>"$o" 2>>"$e" && BASH_ARGV0=$c'
    ' && unset w o e c BASH_EXECUTION_STRING && . "$0" ); echo "$?"; done'
)


class ShellError(Exception):
    """The batch's shell could not be started, or ended before a call did."""


def shares_shell(command: str) -> bool:
    """Whether a command may run in the batch's shell: not if it names ``$$`` (a process id of
    its own, to name files by, say)."""
    return "$$" not in command and "${$}" not in command


class BatchShell:
    """The bash that runs a batch's calls (started at the first; ``close`` ends it)."""

    def __init__(self, bash: str) -> None:
        self._bash = bash
        self._process: subprocess.Popen[bytes] | None = None

    def run(self, dirs: TaskDirs) -> int:
        """Run ``dirs.command`` as the call of ``dirs`` (its stdout and stderr absent or empty);
        its exit status."""
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        paths = (dirs.work, dirs.stdout, dirs.stderr, dirs.command)
        try:
            process.stdin.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
            process.stdin.flush()
            line = process.stdout.readline()
        except OSError:  # BrokenPipeError: it has ended
            line = b""
        if not line.strip().isdigit():
            self.close()
            raise ShellError(f"the batch's bash ({self._bash}) ended while running a call")
        return int(line)

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            try:
                self._process = subprocess.Popen([self._bash, "-c", _SERVER], stdin=subprocess.PIPE,
                                                 stdout=subprocess.PIPE)
            except OSError as exc:
                raise ShellError(f"cannot run {self._bash}: {exc}") from None
        return self._process

    def close(self) -> None:
        """End the shell (it ends when its input does)."""
        process, self._process = self._process, None
        if process is not None:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
            process.wait()

    def __enter__(self) -> BatchShell:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
