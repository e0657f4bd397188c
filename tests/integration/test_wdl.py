"""flow-wdl end to end: real processes, real files (tasks on the host unless a test says so)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("WDL")

HELLO = """
version 1.0
workflow wf {
  input { String who = "world" }
  call hello { input: who = who }
  output { String out = hello.out }
}
task hello {
  input { String who }
  command <<< echo "hello ~{who}" >>>
  output { String out = read_string(stdout()) }
}
"""

SCATTER = """
version 1.1
workflow wf {
  input { Array[Int] xs }
  scatter (x in xs) {
    call square { input: x = x }
    Int doubled = square.y * 2
  }
  call total { input: ys = square.y }
  output {
    Array[Int] squares = square.y
    Array[Int] doubles = doubled
    Int sum = total.sum
  }
}
task square {
  input { Int x }
  command <<< echo $(( ~{x} * ~{x} )) >>>
  output { Int y = read_int(stdout()) }
}
task total {
  input { Array[Int] ys }
  command <<< echo $(( ~{sep("+", ys)} + 0 )) >>>
  output { Int sum = read_int(stdout()) }
}
"""

CONDITIONAL = """
version 1.1
workflow wf {
  input { Boolean go }
  if (go) {
    call say { input: word = "yes" }
  }
  if (!go) {
    String skipped = "no"
  }
  output {
    String? said = say.out
    String? other = skipped
    String either = select_first([say.out, skipped])
  }
}
task say {
  input { String word }
  command <<< echo ~{word} >>>
  output { String out = read_string(stdout()) }
}
"""

LIB = """
version 1.1
workflow count {
  input { File f }
  call lines { input: f = f }
  output { Int n = lines.n }
}
task lines {
  input { File f }
  command <<< wc -l < ~{f} >>>
  output { Int n = read_int(stdout()) }
}
"""

MAIN = """
version 1.1
import "lib.wdl" as lib
workflow main {
  input { File data }
  call lib.count as counted { input: f = data }
  call upper { input: f = data }
  output {
    Int n = counted.n
    File shouted = upper.out
    Array[File] pieces = upper.pieces
  }
}
task upper {
  input { File f }
  command <<<
    tr a-z A-Z < ~{f} > shouted.txt
    mkdir parts
    split -l 1 ~{f} parts/piece.
  >>>
  output {
    File out = "shouted.txt"
    Array[File] pieces = glob("parts/piece.*")
  }
}
"""

FAILING = """
version 1.0
workflow wf {
  call boom
  output { Int x = boom.x }
}
task boom {
  command <<<
    echo "warming up" >&2
    echo "the disk is on fire" >&2
    exit 3
  >>>
  output { Int x = 1 }
}
"""


@pytest.fixture(scope="session")
def wdl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wdl-cache")


def flow_wdl(*args: str, cwd: Path, cache: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flow.wdl.main", "--noProgress", *args]
    env = {**os.environ, "FLOW_WDL_CACHE": str(cache), "TMPDIR": str(cwd)}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def outputs(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def clean_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "flow-wdl: error:" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_hello_world(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "hello.wdl").write_text(HELLO)
    assert outputs(flow_wdl("hello.wdl", cwd=tmp_path, cache=wdl_cache)) == {"wf.out": "hello world"}
    (tmp_path / "in.json").write_text(json.dumps({"wf.who": "flow"}))
    result = flow_wdl("hello.wdl", "-i", "in.json", "-m", "out.json", cwd=tmp_path, cache=wdl_cache)
    assert outputs(result) == {"wf.out": "hello flow"}
    assert json.loads((tmp_path / "out.json").read_text()) == {"wf.out": "hello flow"}


def test_a_run_leaves_nothing_in_the_temporary_directory(tmp_path: Path, wdl_cache: Path) -> None:
    """A finished run's job store, scratch and call folders all go; $TMPDIR is as it was."""
    (tmp_path / "scatter.wdl").write_text(SCATTER)
    (tmp_path / "in.json").write_text(json.dumps({"wf.xs": [1, 2, 3]}))
    temp = tmp_path / "temp"
    temp.mkdir()
    command = [sys.executable, "-m", "flow.wdl.main", "--noProgress", "scatter.wdl", "-i", "in.json", "-o", "out"]
    env = {**os.environ, "FLOW_WDL_CACHE": str(wdl_cache), "TMPDIR": str(temp)}
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert outputs(done)["wf.sum"] == 14
    assert sorted(p.name for p in temp.iterdir()) == []


def test_scatter_and_gather(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(SCATTER)
    (tmp_path / "in.json").write_text(json.dumps({"wf.xs": [1, 2, 3, 4]}))
    got = outputs(flow_wdl("wf.wdl", "in.json", cwd=tmp_path, cache=wdl_cache))
    assert got == {"wf.squares": [1, 4, 9, 16], "wf.doubles": [2, 8, 18, 32], "wf.sum": 30}
    (tmp_path / "empty.json").write_text(json.dumps({"wf.xs": []}))
    got = outputs(flow_wdl("wf.wdl", "empty.json", cwd=tmp_path, cache=wdl_cache))
    assert got == {"wf.squares": [], "wf.doubles": [], "wf.sum": 0}


@pytest.mark.parametrize(("go", "expected"), [
    (True, {"wf.said": "yes", "wf.other": None, "wf.either": "yes"}),
    (False, {"wf.said": None, "wf.other": "no", "wf.either": "no"}),
])
def test_conditional(tmp_path: Path, wdl_cache: Path, go: bool, expected: dict[str, Any]) -> None:
    (tmp_path / "wf.wdl").write_text(CONDITIONAL)
    (tmp_path / "in.json").write_text(json.dumps({"wf.go": go}))
    assert outputs(flow_wdl("wf.wdl", "in.json", cwd=tmp_path, cache=wdl_cache)) == expected


def test_subworkflow_import_and_files(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "lib.wdl").write_text(LIB)
    (tmp_path / "main.wdl").write_text(MAIN)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "words.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "in.json").write_text(json.dumps({"main.data": "data/words.txt"}))
    got = outputs(flow_wdl("main.wdl", "in.json", "-o", "results", cwd=tmp_path, cache=wdl_cache))
    assert got["main.n"] == 3
    shouted = Path(got["main.shouted"])
    assert shouted.parent == tmp_path / "results" and shouted.read_text() == "ONE\nTWO\nTHREE\n"
    pieces = [Path(p) for p in got["main.pieces"]]
    assert [p.name for p in pieces] == ["piece.aa", "piece.ab", "piece.ac"]
    assert [p.read_text() for p in pieces] == ["one\n", "two\n", "three\n"]
    assert all(p.is_relative_to(tmp_path / "results") for p in pieces)


def test_failing_task_shows_call_exit_code_and_stderr(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "fail.wdl").write_text(FAILING)
    result = flow_wdl("fail.wdl", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "wf.boom", "exit code 3", "the disk is on fire")


def test_malformed_wdl(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "bad.wdl").write_text("version 1.0\nworkflow wf {\n  call hello {\n")
    clean_error(flow_wdl("bad.wdl", cwd=tmp_path, cache=wdl_cache), "bad.wdl:3:")


def test_type_error_names_file_line_and_column(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "typed.wdl").write_text(
        "version 1.0\nworkflow wf {\n  Int z = [1]\n  output { Int o = z }\n}\n")
    clean_error(flow_wdl("typed.wdl", cwd=tmp_path, cache=wdl_cache), "typed.wdl:3:11", "Int")


def test_missing_input(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(SCATTER)
    clean_error(flow_wdl("wf.wdl", cwd=tmp_path, cache=wdl_cache), "missing required inputs", "xs")


def test_wrong_input_type(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(SCATTER)
    (tmp_path / "in.json").write_text(json.dumps({"wf.xs": ["a", "b"]}))
    clean_error(flow_wdl("wf.wdl", "in.json", cwd=tmp_path, cache=wdl_cache), "wf.xs")


def test_missing_input_file(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "lib.wdl").write_text(LIB)
    (tmp_path / "in.json").write_text(json.dumps({"count.f": "absent.txt"}))
    clean_error(flow_wdl("lib.wdl", "in.json", cwd=tmp_path, cache=wdl_cache), "absent.txt")


def test_image_without_container_runs_on_host_with_warning(tmp_path: Path, wdl_cache: Path) -> None:
    text = HELLO.replace("command <<<", 'runtime { docker: "ubuntu:22.04" }\n  command <<<')
    (tmp_path / "img.wdl").write_text(text)
    result = flow_wdl("img.wdl", "--container", "none", cwd=tmp_path, cache=wdl_cache)
    assert outputs(result) == {"wf.out": "hello world"}
    assert "run on the host" in result.stderr


def _podman_image(image: str) -> bool:
    if shutil.which("podman") is None:
        return False
    try:
        return subprocess.run(["podman", "image", "exists", image], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _podman_image("ubuntu:22.04"), reason="no podman with a local ubuntu:22.04")
def test_task_in_podman(tmp_path: Path, wdl_cache: Path) -> None:
    where = "if [ -f /run/.containerenv ]; then echo container; else echo host; fi"
    text = HELLO.replace('echo "hello ~{who}"', where).replace(
        "command <<<", 'runtime { docker: "ubuntu:22.04" }\n  command <<<')
    (tmp_path / "img.wdl").write_text(text)
    got = outputs(flow_wdl("img.wdl", "--container", "podman", cwd=tmp_path, cache=wdl_cache))
    assert got == {"wf.out": "container"}
    got = outputs(flow_wdl("img.wdl", "--container", "none", cwd=tmp_path, cache=wdl_cache))
    assert got == {"wf.out": "host"}


# ---- outputs that leave the task's directory (issue 18) -------------------------------------
ESCAPE = """
version 1.1
task t {
  input { String secret  String p }
  command <<<
    echo made > ok.txt
    ln -s ok.txt ok-link
    ln -s ~{secret} link
    echo leaked > ../x
    mkdir d
    ln -s ~{secret} d/s.txt
    echo fine > d/fine.txt
  >>>
  output {
    File? o = if p == "glob" then None else p
    Array[File] g = if p == "glob" then glob("d/*.txt") else []
  }
}
"""


def _escape_run(tmp_path: Path, wdl_cache: Path, p: str, *extra: str, doc: str = ESCAPE) -> tuple[
        subprocess.CompletedProcess[str], Path, str]:
    secret = tmp_path / "host-secret.txt"
    token = f"host-secret-{os.getpid()}-{p}"
    secret.write_text(token + "\n")
    (tmp_path / "esc.wdl").write_text(doc)
    (tmp_path / "in.json").write_text(json.dumps({"t.secret": str(secret), "t.p": p}))
    result = flow_wdl("esc.wdl", "in.json", "-o", "out", *extra, cwd=tmp_path, cache=wdl_cache)
    return result, tmp_path / "out", token


def _exported_texts(outdir: Path) -> list[str]:
    return [f.read_text() for f in outdir.rglob("*") if f.is_file()] if outdir.exists() else []


@pytest.mark.parametrize(("p", "shown"), [
    ("/etc/hostname", "/etc/hostname"),
    ("../x", "../x"),
    ("link", "link (a link to "),
    ("glob", "d/s.txt (a link to "),
])
def test_output_outside_the_task_directory_is_refused(tmp_path: Path, wdl_cache: Path, p: str,
                                                      shown: str) -> None:
    if p == "/etc/hostname" and not os.path.isfile(p):
        pytest.skip("no /etc/hostname here")
    result, outdir, token = _escape_run(tmp_path, wdl_cache, p)
    clean_error(result, "call t failed", "task t: output ", shown, "outside the task's working directory")
    assert result.returncode == 1
    name = "g" if p == "glob" else "o"
    assert f"output {name}: {shown}" in result.stderr
    assert result.stdout == ""
    texts = _exported_texts(outdir)
    assert not any(token in t or "leaked" in t for t in texts), texts
    if p == "/etc/hostname":
        hostname = Path(p).read_text()
        assert hostname not in texts


@pytest.mark.parametrize("p", ["ok.txt", "ok-link"])
def test_output_inside_the_task_directory_works(tmp_path: Path, wdl_cache: Path, p: str) -> None:
    result, outdir, token = _escape_run(tmp_path, wdl_cache, p)
    got = outputs(result)
    assert Path(got["t.o"]).read_text() == "made\n"
    assert Path(got["t.o"]).is_relative_to(outdir)
    assert got["t.g"] == []
    assert not any(token in t for t in _exported_texts(outdir))


@pytest.mark.slow
@pytest.mark.skipif(not _podman_image("ubuntu:22.04"), reason="no podman with a local ubuntu:22.04")
@pytest.mark.parametrize(("p", "shown"), [("/etc/hostname", "/etc/hostname"), ("link", "link (a link to "),
                                          ("glob", "d/s.txt (a link to "), ("ok-link", "")])
def test_output_paths_checked_in_a_container(tmp_path: Path, wdl_cache: Path, p: str, shown: str) -> None:
    doc = ESCAPE.replace("  command <<<", '  runtime { docker: "ubuntu:22.04" }\n  command <<<')
    result, outdir, token = _escape_run(tmp_path, wdl_cache, p, "--container", "podman", doc=doc)
    if not shown:
        assert Path(outputs(result)["t.o"]).read_text() == "made\n"
        return
    clean_error(result, f"task t: output {'g' if p == 'glob' else 'o'}: {shown}", "outside")
    assert not any(token in t for t in _exported_texts(outdir))


# ---- a File that becomes a String (issue 20) ------------------------------------------------
FILE_TO_STRING = """
version 1.0
workflow wf {
  input { File f }
  call count { input: s = f, t = "~{f}", many = [f] }
  call make
  String made = make.out
  output {
    String n = count.n
    String echoed = count.echoed
    String path = f
    String interpolated = "file: ~{f}"
    String made_path = made
    String back = count.back
  }
}
task count {
  input { String s  String t  Array[String] many }
  command <<<
    echo "~{s} ~{t} ~{sep=' ' many}" > seen.txt
    cat ~{s} ~{t} ~{sep=' ' many} | wc -l
  >>>
  output {
    String n = read_string(stdout())
    String echoed = read_string("seen.txt")
    String back = "~{s} and ~{t}"
  }
}
task make {
  command <<< echo made > m.txt >>>
  output { File out = "m.txt" }
}
"""


def test_file_as_string_is_a_path(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(FILE_TO_STRING)
    (tmp_path / "f.txt").write_text("a\nb\n")
    (tmp_path / "in.json").write_text(json.dumps({"wf.f": "f.txt"}))
    result = flow_wdl("wf.wdl", "in.json", "-o", "out", cwd=tmp_path, cache=wdl_cache)
    got = outputs(result)
    assert "flowfile:" not in result.stdout + result.stderr
    assert got["wf.n"] == "6"  # the command read the file through each String
    assert "flowfile:" not in got["wf.echoed"] and got["wf.echoed"].count("f.txt") == 3
    assert got["wf.path"] == str(tmp_path / "f.txt")  # as miniwdl: the input's host path
    assert got["wf.interpolated"] == f"file: {tmp_path / 'f.txt'}"
    assert Path(got["wf.made_path"]).read_text() == "made\n"
    assert Path(got["wf.made_path"]).is_relative_to(tmp_path / "out")
    # a task's String naming its input file by the task's path: the host path again
    assert got["wf.back"] == f"{tmp_path / 'f.txt'} and {tmp_path / 'f.txt'}"


# ---- miniwdl's command line (issue 20) ------------------------------------------------------
TASK_LIBRARY = """
version 1.0
task up {
  input { String s  Array[Int] n = [] }
  command <<< echo "~{s} ~{sep=',' n}" | tr a-z A-Z >>>
  output { String o = read_string(stdout()) }
}
task count {
  input { File f }
  command <<< wc -l < ~{f} >>>
  output { Int n = read_int(stdout()) }
}
"""


def test_task_option_runs_one_task_of_a_library(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "lib.wdl").write_text(TASK_LIBRARY)
    (tmp_path / "f.txt").write_text("1\n2\n3\n")
    clean_error(flow_wdl("lib.wdl", cwd=tmp_path, cache=wdl_cache), "--task NAME", "up, count")
    got = outputs(flow_wdl("lib.wdl", "--task", "up", "s=hello", "n=1", "n=2", cwd=tmp_path, cache=wdl_cache))
    assert got == {"up.o": "HELLO 1,2"}
    got = outputs(flow_wdl("lib.wdl", "--task", "count", "f=f.txt", cwd=tmp_path, cache=wdl_cache))
    assert got == {"count.n": 3}
    clean_error(flow_wdl("lib.wdl", "--task", "nope", cwd=tmp_path, cache=wdl_cache), "no task nope", "up, count")
    # a document with a workflow: --task runs the task instead
    (tmp_path / "hello.wdl").write_text(HELLO)
    got = outputs(flow_wdl("hello.wdl", "--task", "hello", "who=task", cwd=tmp_path, cache=wdl_cache))
    assert got == {"hello.out": "hello task"}


def test_key_value_and_inline_json_inputs(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "hello.wdl").write_text(HELLO)
    run = lambda *args: flow_wdl("hello.wdl", *args, cwd=tmp_path, cache=wdl_cache)  # noqa: E731
    assert outputs(run("who=pairs")) == {"wf.out": "hello pairs"}
    assert outputs(run("who=", "two words")) == {"wf.out": "hello two words"}  # miniwdl's "x=" "y"
    assert outputs(run('{"wf.who": "inline"}')) == {"wf.out": "hello inline"}
    assert outputs(run("-i", '{"who": "short name"}')) == {"wf.out": "hello short name"}
    (tmp_path / "in.json").write_text(json.dumps({"wf.who": "file"}))
    assert outputs(run("in.json")) == {"wf.out": "hello file"}
    assert outputs(run("in.json", "who=wins")) == {"wf.out": "hello wins"}  # as miniwdl: pairs win
    assert outputs(run("--empty", "who")) == {"wf.out": "hello "}
    clean_error(run("nobody=1"), "No such input to wf: nobody")
    clean_error(run('{"wf.who": '), "inline JSON inputs are not valid JSON")
    result = run("--bogus")
    clean_error(result, "unrecognized arguments: --bogus")
    assert len(result.stderr.splitlines()) == 1  # no usage dump


def test_check_and_version(tmp_path: Path, wdl_cache: Path) -> None:
    def check(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "flow.wdl.main", "check", name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)

    (tmp_path / "lib.wdl").write_text(TASK_LIBRARY)
    result = check("lib.wdl")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["lib.wdl", "task", "count", "task", "up"]
    (tmp_path / "bad.wdl").write_text("version 1.0\nworkflow wf {\n  Int z = [1]\n}\n")
    clean_error(check("bad.wdl"), "bad.wdl:3:11")
    result = flow_wdl("--version", cwd=tmp_path, cache=wdl_cache)
    assert result.returncode == 0, result.stderr
    from importlib.metadata import version
    for package in ("flow", "cwltool", "miniwdl"):
        assert f"{package} {version(package)}" in result.stdout


def test_failure_reported_once_and_resume_hint_works(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "fail.wdl").write_text(FAILING)
    result = flow_wdl("fail.wdl", "--jobStore", "js", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "exit code 3")
    assert result.stderr.count("the disk is on fire") == 1, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert error_lines and all("exit code 3" in line and "exit code 1" not in line for line in error_lines)
    hint = result.stderr.rsplit("resume with: ", 1)[1].strip().removesuffix(")")
    words = shlex.split(hint)
    assert words[0] == "flow-wdl" and "--restart" in words and words[words.index("--jobStore") + 1] == "js"
    (tmp_path / "fail.wdl").write_text(FAILING.replace("exit 3", "exit 0"))
    env = {**os.environ, "FLOW_WDL_CACHE": str(wdl_cache)}
    resumed = subprocess.run([sys.executable, "-m", "flow.wdl.main", *words[1:]], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env=env)
    assert outputs(resumed) == {"wf.x": 1}


def test_empty_documents_and_absurd_nesting(tmp_path: Path, wdl_cache: Path) -> None:
    for text in ("", "version 1.0\n"):
        (tmp_path / "empty.wdl").write_text(text)
        clean_error(flow_wdl("empty.wdl", cwd=tmp_path, cache=wdl_cache), "neither a workflow nor a task")
    (tmp_path / "hello.wdl").write_text(HELLO)
    (tmp_path / "deep.json").write_text('{"wf.who": ' + "[" * 10000 + "]" * 10000 + "}")
    result = flow_wdl("hello.wdl", "deep.json", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "deep.json nest deeper")
    assert len(result.stderr.splitlines()) == 1
    n = 10000
    (tmp_path / "deep.wdl").write_text(
        "version 1.0\nworkflow w {\n  Int x = length(" + "[" * n + "1" + "]" * n + ")\n}\n")
    result = flow_wdl("deep.wdl", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "deep.wdl nests expressions deeper")
    assert len(result.stderr.splitlines()) == 1


def test_compound_value_as_string_is_refused(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(
        'version 1.1\nworkflow w {\n  String s = [1]\n  output { File j = write_json([[1], "t"]) }\n}\n')
    result = flow_wdl("wf.wdl", "-o", "out", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "wf.wdl:3:14: s's type is a String, but the value is Array[Int]",
                "wf.wdl:4:33: the array's item type is a String")
    assert not (tmp_path / "out").exists()
    (tmp_path / "ok.wdl").write_text(
        'version 1.1\nworkflow w {\n  Array[String] a = ["x", "~{1}"]\n  output { String s = a[1] }\n}\n')
    assert outputs(flow_wdl("ok.wdl", cwd=tmp_path, cache=wdl_cache)) == {"w.s": "1"}


WRITE_LINES = """
version 1.0
workflow wf {
  input { Array[File] fs  Boolean made = false }
  if (made) {
    call make
  }
  File list = write_lines(flatten([fs, select_all([make.out])]))
  call cat_all { input: list = list }
  output { String s = cat_all.s  String l = read_string(list) }
}
task make {
  command <<< echo made > m.txt >>>
  output { File out = "m.txt" }
}
task cat_all {
  input { File list }
  command <<< while read f; do cat "$f"; done < ~{list} >>>
  output { String s = read_string(stdout()) }
}
"""


def test_files_written_in_workflow_expressions_hold_host_paths(tmp_path: Path, wdl_cache: Path) -> None:
    (tmp_path / "wf.wdl").write_text(WRITE_LINES)
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.txt").write_text("two\n")
    got = outputs(flow_wdl("wf.wdl", "fs=a.txt", "fs=b.txt", cwd=tmp_path, cache=wdl_cache))
    assert got == {"wf.l": f"{tmp_path / 'a.txt'}\n{tmp_path / 'b.txt'}", "wf.s": "one\ntwo"}
    # a file a task made has no host path yet: refused, rather than writing flow's internal URI
    result = flow_wdl("wf.wdl", "fs=a.txt", "made=true", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "m.txt, a file a task made, has no host path")
    assert "flowfile:" not in result.stderr
    assert all("exit code 1" not in line for line in result.stderr.splitlines() if " ERROR " in line)


def test_interrupted_run_prints_a_resume_command_that_works(tmp_path: Path, wdl_cache: Path) -> None:
    marker = tmp_path / "started"
    doc = 'version 1.0\ntask s {\n  input { String m }\n  command <<< touch ~{m}; sleep SECONDS; echo done >>>\n' \
          '  output { String o = read_string(stdout()) }\n}\n'
    (tmp_path / "s.wdl").write_text(doc.replace("SECONDS", "600"))
    env = {**os.environ, "FLOW_WDL_CACHE": str(wdl_cache), "TMPDIR": str(tmp_path)}
    command = [sys.executable, "-m", "flow.wdl.main", "--noProgress", "s.wdl", f"m={marker}"]
    run = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), "the task did not start"
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    assert run.returncode == 130 and "Traceback" not in stderr, stderr
    words = shlex.split(stderr.rsplit("resume with: ", 1)[1].strip())
    assert words[0] == "flow-wdl" and words[-1] == "--restart" and "--jobStore" in words
    (tmp_path / "s.wdl").write_text(doc.replace("SECONDS", "0"))
    resumed = subprocess.run([sys.executable, "-m", "flow.wdl.main", *words[1:]], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env=env)
    assert outputs(resumed) == {"s.o": "done"}


def test_task_reads_outside_its_directory_are_refused(tmp_path: Path, wdl_cache: Path) -> None:
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host secret\n")
    (tmp_path / "f.txt").write_text("input\n")
    doc = ('version 1.0\ntask t {\n  input { File f  String p }\n  String s = read_string(p)\n'
           '  command <<< echo "~{s}" >>>\n  output { String o = read_string(stdout()) + read_string(f) }\n}\n')
    (tmp_path / "r.wdl").write_text(doc)
    result = flow_wdl("r.wdl", "f=f.txt", f"p={secret}", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "task t: cannot evaluate s", f"{secret} is outside the task's working directory")
    assert "host secret" not in result.stdout + result.stderr
    result = flow_wdl("r.wdl", "f=f.txt", "p=../command", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "outside the task's working directory")
    # its own input, by the path the task sees, is fine
    ok = doc.replace("read_string(p)", "read_string(f)")
    (tmp_path / "r.wdl").write_text(ok)
    assert outputs(flow_wdl("r.wdl", "f=f.txt", "p=x", cwd=tmp_path, cache=wdl_cache)) == {"t.o": "inputinput"}


CHANGES_INPUT = """
version 1.0
task t {
  input { File f }
  command <<< echo changed >> ~{f} >>>
  output { String s = "done" }
}
"""


def test_task_changing_its_input_fails_and_leaves_the_input(tmp_path: Path, wdl_cache: Path) -> None:
    """miniwdl mounts task inputs read-only, so such a command fails there too."""
    (tmp_path / "t.wdl").write_text(CHANGES_INPUT)
    (tmp_path / "in.txt").write_text("original\n")
    (tmp_path / "in.json").write_text(json.dumps({"t.f": str(tmp_path / "in.txt")}))
    result = flow_wdl("t.wdl", "in.json", cwd=tmp_path, cache=wdl_cache)
    clean_error(result, "call t failed", "changed its input file in.txt", "read-only")
    assert (tmp_path / "in.txt").read_text() == "original\n"
