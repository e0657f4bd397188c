"""A large WDL scatter runs its calls in batch jobs: the same outputs, in order, as one job per
call; a failing call fails the run naming it; --restart runs only the calls that had not
finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("WDL")

#: A chain inside the scatter (double reads square), a conditional call, a nested scatter, File
#: outputs read by a gather, and a scatter whose calls ask for different cores (never mixed).
WF = """
version 1.1
workflow wf {
  input { Array[Int] xs }
  scatter (x in xs) {
    call square { input: x = x }
    call double { input: y = square.y }
    if (x % 3 == 0) {
      call square as third { input: x = x }
    }
    scatter (k in [1, 2]) {
      call square as inner { input: x = x + k }
    }
    call sized { input: x = x }
  }
  call gather { input: files = square.out }
  output {
    Array[Int] squares = square.y
    Array[Int] doubles = double.z
    Array[Int?] thirds = third.y
    Array[Array[Int]] inners = inner.y
    Array[Int] sizes = sized.cores
    Array[String] lines = read_lines(gather.all)
  }
}
task square {
  input { Int x }
  command <<< echo $(( ~{x} * ~{x} )) >>>
  output { Int y = read_int(stdout()) File out = stdout() }
}
task double {
  input { Int y }
  command <<< echo $(( ~{y} * 2 )) >>>
  output { Int z = read_int(stdout()) }
}
task sized {
  input { Int x }
  command <<< echo ~{x} >>>
  runtime { cpu: if x % 2 == 0 then 1 else 2 }
  output { Int cores = if x % 2 == 0 then 1 else 2 }
}
task gather {
  input { Array[File] files }
  command <<< cat ~{sep(" ", files)} >>>
  output { File all = stdout() }
}
"""

#: Each call logs its start and end; "bad" fails until its marker file exists.
RESUMING = """
version 1.1
workflow resume {
  input { Array[String] words  String marker }
  scatter (w in words) {
    call say { input: word = w, marker = marker }
  }
  output { Array[String] out = say.out }
}
task say {
  input { String word  String marker }
  command <<<
    if [ "~{word}" = bad ] && [ ! -e "~{marker}.ok" ]; then exit 3; fi
    echo "~{word}" >> "~{marker}.log"
    echo "~{word}"
  >>>
  output { String out = read_string(stdout()) }
}
"""


def flow_wdl(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flow.wdl.main", "--noProgress", "--container", "none", *args]
    environment = {**os.environ, "FLOW_WDL_CACHE": str(cwd / "cache"), "TMPDIR": str(cwd), **(env or {})}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=environment)


def batch_jobs(store: Path, cwd: Path) -> dict[str, int]:
    stats = subprocess.run([sys.executable, "-m", "flow.core.cli", "stats", "--json", "--all", str(store)],
                           cwd=cwd, capture_output=True, text=True, timeout=60, check=True)
    return {row["kind"]: row["count"] for row in json.loads(stats.stdout)["kinds"]}


def run_wf(tmp_path: Path, name: str, xs: list[int], env: dict[str, str]) -> Any:
    (tmp_path / "wf.wdl").write_text(WF)
    (tmp_path / "in.json").write_text(json.dumps({"wf.xs": xs}))
    result = flow_wdl(["wf.wdl", "in.json", "--maxCores", "2", "--jobStore", name, "--stats",
                       "--clean", "never", "-o", f"out-{name}"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), batch_jobs(tmp_path / name, tmp_path)


def test_batched_calls_give_the_outputs_of_one_job_per_call(tmp_path: Path) -> None:
    xs = list(range(20))
    batched, kinds = run_wf(tmp_path, "batched", xs, {"FLOW_WDL_BATCH_SIZE": "4"})
    single, single_kinds = run_wf(tmp_path, "single", xs, {"FLOW_WDL_BATCH_SIZE": "1"})
    # square, double and third: 5 batches of 4 each (third: 7 calls, 2 batches); sized: 10
    # calls of 1 core and 10 of 2, never in one batch (3 + 3); inner: batches of 2, 20 scatters
    assert kinds.get("WDLTaskBatch") == 5 + 5 + 2 + 6 + 20, kinds
    assert "WDLTaskBatch" not in single_kinds
    assert batched["wf.squares"] == [x * x for x in xs]
    assert batched["wf.doubles"] == [2 * x * x for x in xs]
    assert batched["wf.thirds"] == [x * x if x % 3 == 0 else None for x in xs]
    assert batched["wf.inners"] == [[(x + 1) ** 2, (x + 2) ** 2] for x in xs]
    assert batched["wf.sizes"] == [1 if x % 2 == 0 else 2 for x in xs]
    assert batched["wf.lines"] == [str(x * x) for x in xs]
    assert batched == single


def test_the_default_batch_size_follows_the_scatter_and_the_cores(tmp_path: Path) -> None:
    """60 calls of one core on one core: 4 batches of 15 (a batch a quarter of a slot's share)."""
    (tmp_path / "r.wdl").write_text(RESUMING)
    words = [f"w{i}" for i in range(60)]
    (tmp_path / "in.json").write_text(json.dumps({"resume.words": words, "resume.marker": str(tmp_path / "m")}))
    result = flow_wdl(["r.wdl", "in.json", "--maxCores", "1", "--jobStore", "js", "--stats", "--clean", "never"],
                      tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["resume.out"] == words
    assert batch_jobs(tmp_path / "js", tmp_path).get("WDLTaskBatch") == 4


def test_a_failing_call_in_a_batch_fails_the_run_naming_it(tmp_path: Path) -> None:
    (tmp_path / "r.wdl").write_text(RESUMING)
    words = [f"w{i}" for i in range(12)]
    words[6] = "bad"
    (tmp_path / "in.json").write_text(json.dumps({"resume.words": words, "resume.marker": str(tmp_path / "m")}))
    result = flow_wdl(["r.wdl", "in.json", "--maxCores", "1", "--retryCount", "0"], tmp_path,
                      {"FLOW_WDL_BATCH_SIZE": "4"})
    assert result.returncode != 0, result.stdout
    assert "resume.say[6]" in result.stderr and "exit code 3" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_restart_runs_only_the_unfinished_calls_of_a_batch(tmp_path: Path) -> None:
    """A call fails in the middle of its batch; after --restart every call has run exactly once
    to its end (those before it in its batch are not run again)."""
    (tmp_path / "r.wdl").write_text(RESUMING)
    marker = tmp_path / "m"
    words = [f"w{i}" for i in range(40)]
    words[23] = "bad"
    (tmp_path / "in.json").write_text(json.dumps({"resume.words": words, "resume.marker": str(marker)}))
    env = {"FLOW_WDL_BATCH_SIZE": "10"}
    base = ["--maxCores", "1", "--jobStore", str(tmp_path / "js")]
    failed = flow_wdl(["r.wdl", "in.json", *base, "--retryCount", "0"], tmp_path, env)
    assert failed.returncode != 0, failed.stdout
    ran_before = Path(f"{marker}.log").read_text().splitlines()
    assert "w22" in ran_before and "bad" not in ran_before  # batch 20..29 got as far as 22
    Path(f"{marker}.ok").touch()
    resumed = flow_wdl(["r.wdl", "in.json", *base, "--restart"], tmp_path, env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resume.out"] == words
    ran = Path(f"{marker}.log").read_text().splitlines()
    assert sorted(ran) == sorted(words), "a call ran twice, or never"


#: Even calls leave a process writing to their stdout after they end, calls 3 and 6 leave a file
#: in their working directory; the next call (0.4 s long) lists the working directory it found
#: on stderr.
LEFTOVERS = """
version 1.1
workflow leave {
  input { Array[Int] ns }
  scatter (n in ns) {
    call step { input: n = n }
  }
  output { Array[String] outs = step.out  Array[String] found = step.found }
}
task step {
  input { Int n }
  command <<<
    ls -A >&2
    if [ $(( ~{n} % 2 )) -eq 0 ]; then (sleep 0.2; echo late; echo late >&2) & fi
    if [ $(( ~{n} % 3 )) -eq 0 ]; then echo left > left.txt; fi
    if [ $(( ~{n} % 2 )) -eq 1 ]; then sleep 0.4; fi
    echo ~{n}
  >>>
  output { String out = read_string(stdout())  String found = read_string(stderr()) }
}
"""


def test_each_call_of_a_batch_finds_a_fresh_folder(tmp_path: Path) -> None:
    """A call never sees what an earlier call of its batch left: files in the working directory,
    nor the later output of a process it left running (the folder is kept for the next call
    only when nothing holds it)."""
    (tmp_path / "l.wdl").write_text(LEFTOVERS)
    ns = list(range(9))
    (tmp_path / "in.json").write_text(json.dumps({"leave.ns": ns}))
    result = flow_wdl(["l.wdl", "in.json", "--maxCores", "1", "-o", "out"], tmp_path,
                      {"FLOW_WDL_BATCH_SIZE": "9"})
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["leave.outs"] == [str(n) for n in ns]
    assert outputs["leave.found"] == ["" for _ in ns]


#: Each call reports what it found (an environment variable, a function, the shell's own loop
#: variables, $0, its working directory, the bytes on its stdin), then leaves things behind for
#: the next (an exported variable, a function, another directory); call 2 is killed by SIGKILL
#: (accepted as exit status 137). pid prints $$.
SHELL_STATE = """
version 1.1
workflow probe {
  input { Array[Int] ns }
  scatter (n in ns) {
    call look { input: n = n }
    call pid
  }
  output { Array[String] lines = look.line  Array[Int] pids = pid.id }
}
task look {
  input { Int n }
  command <<<
    echo "${LEAK-none} $(type -t leaked || echo nofunc) [${w-}${o-}${e-}${c-}] $(basename "$0") $(basename "$PWD") $(wc -c)"
    export LEAK=~{n}; leaked() { :; }; cd /
    if [ ~{n} -eq 2 ]; then kill -9 $BASHPID; fi
    exit ~{n}
  >>>
  runtime { returnCodes: [0, 1, 3, 137] }
  output { String line = read_string(stdout()) }
}
task pid {
  command <<< echo $$ >>>
  output { Int id = read_int(stdout()) }
}
"""


@pytest.mark.parametrize("batch", ["4", "1"])
def test_calls_in_a_batch_run_as_in_a_bash_of_their_own(tmp_path: Path, batch: str) -> None:
    """Batched (one bash for the batch, a subshell per call) or not: each call finds a fresh
    shell in its working directory with nothing on stdin, and exits with its own status, 128 + 9
    when killed by SIGKILL; a command naming $$ gets a process id of its own."""
    (tmp_path / "p.wdl").write_text(SHELL_STATE)
    ns = [0, 1, 2, 3]
    (tmp_path / "in.json").write_text(json.dumps({"probe.ns": ns}))
    result = flow_wdl(["p.wdl", "in.json", "--maxCores", "1"], tmp_path, {"FLOW_WDL_BATCH_SIZE": batch})
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["probe.lines"] == ["none nofunc [] command work 0"] * len(ns)
    assert len(set(outputs["probe.pids"])) == len(ns)


#: Four outputs written "first", then (0.5 s after the task ended) appended to: through another
#: name of the file (outside the task's folder), through a descriptor the task left open, and by its name again; read by a
#: task that starts 1.5 s later.
LATE_WRITES = """
version 1.1
workflow late {
  input { String outside }
  call make { input: outside = outside }
  call pause { input: after = make.alone }
  call later { input: files = [make.alone, make.linked, make.held, make.renamed], after = pause.done }
  output { Array[String] seen = later.lines }
}
task make {
  input { String outside }
  command <<<
    echo first > alone.txt
    echo first > linked.txt; ln linked.txt "~{outside}/other-name.txt"
    exec 3>> held.txt; echo first >&3
    echo first > renamed.txt
    (sleep 0.5; echo more >> "~{outside}/other-name.txt"; echo more >&3; echo more >> renamed.txt) > /dev/null 2>&1 &
  >>>
  output { File alone = "alone.txt"  File linked = "linked.txt"  File held = "held.txt"  File renamed = "renamed.txt" }
}
task pause {
  input { File after }
  command <<< sleep 1.5 >>>
  output { Boolean done = true }
}
task later {
  input { Array[File] files  Boolean after }
  command <<< cat ~{sep(" ", files)} >>>
  output { Array[String] lines = read_lines(stdout()) }
}
"""


def test_a_stored_output_never_changes_with_what_the_task_left_running(tmp_path: Path) -> None:
    """Output files are stored without a copy only where nothing else reaches them: a file with
    another name, or one a process the task left running holds open, is copied; a process that
    opens the name again later makes a new file. None of them changes what the next task reads."""
    (tmp_path / "late.wdl").write_text(LATE_WRITES)
    result = flow_wdl(["late.wdl", f"outside={tmp_path}", "--maxCores", "1", "-o", "out"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["late.seen"] == ["first"] * 4
