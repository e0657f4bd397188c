"""Toil's options, each checked by its effect on a Toil-style script ported by its imports."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tests.porting.conftest import PortedRun


def probe(run_ported: PortedRun, tmp_path: Path, *args: str, check: bool = True,
          env: dict[str, str] | None = None) -> tuple[dict[str, Any] | None, str]:
    done = run_ported("options_probe.py", str(tmp_path / "js"), "--noProgress", *args, check=check, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return (json.loads(lines[-1]) if lines else None), done.stderr


@pytest.mark.parametrize(("flag", "shows"), [
    ("--logOff", []),
    ("--logCritical", ["critical"]),
    ("--logInfo", ["critical", "info"]),
    ("--logDebug", ["critical", "info", "debug"]),
])
def test_log_level_flags(run_ported: PortedRun, tmp_path: Path, flag: str, shows: list[str]) -> None:
    _, err = probe(run_ported, tmp_path, flag)
    for level in ("critical", "info", "debug"):
        assert (f"probe-{level}" in err) == (level in shows), err


def test_write_logs_of_failed_and_all_jobs_truncated_and_gzipped(run_ported: PortedRun, tmp_path: Path) -> None:
    failed_only, all_jobs, gz = tmp_path / "failed", tmp_path / "all", tmp_path / "gz"
    probe(run_ported, tmp_path, "--fail", "5000", "--retryCount", "0", "--writeLogs", str(failed_only),
          "--maxLogFileSize", "200", check=False)
    (logs,) = list(failed_only.iterdir())
    text = logs.read_text()
    assert logs.name.startswith("noisy_failure_") and len(text.encode()) <= 200
    assert "failing on purpose" in text  # the tail is kept
    probe(run_ported, tmp_path / "b", "--fail", "100", "--retryCount", "0", "--writeLogs", str(all_jobs),
          "--writeLogsFromAllJobs", "--maxLogFileSize", "0", check=False)
    names = sorted(p.name.split("_")[0] for p in all_jobs.iterdir())
    assert names == ["Probe", "noisy"]
    assert "probe output line" in next(all_jobs.glob("Probe_*")).read_text()
    probe(run_ported, tmp_path / "c", "--fail", "100", "--retryCount", "0", "--writeLogsGzip", str(gz), check=False)
    (zipped,) = list(gz.iterdir())
    assert zipped.name.endswith(".log.gz") and b"failing on purpose" in gzip.decompress(zipped.read_bytes())


def test_scale_lets_a_big_job_run_on_a_small_machine(run_ported: PortedRun, tmp_path: Path) -> None:
    _, err = probe(run_ported, tmp_path, "--maxCores", "1", "--cores", "2", check=False)
    assert "asks for 2 cores but at most 1" in err
    result, _ = probe(run_ported, tmp_path / "scaled", "--maxCores", "1", "--cores", "2", "--scale", "0.5")
    assert result is not None


def test_default_preemptible_and_accelerators(run_ported: PortedRun, tmp_path: Path) -> None:
    result, _ = probe(run_ported, tmp_path)
    assert result == {"preemptible": False, "accelerators": [], "env": {"PROBE_A": None, "PROBE_B": None},
                      "log_in_coordination": False}
    result, _ = probe(run_ported, tmp_path / "p", "--defaultPreemptible")
    assert result is not None and result["preemptible"] is True
    _, err = probe(run_ported, tmp_path / "a", "--defaultAccelerators", "cuda:1", check=False)
    assert "asks for 1 accelerator(s) but the single-machine batch system has none" in err


def test_set_env(run_ported: PortedRun, tmp_path: Path) -> None:
    result, _ = probe(run_ported, tmp_path, "--setEnv", "PROBE_A=from the option", "-e", "PROBE_B",
                      env={"PROBE_B": "from the leader"})
    assert result is not None
    assert result["env"] == {"PROBE_A": "from the option", "PROBE_B": "from the leader"}


def test_coordination_dir_holds_the_worker_logs(run_ported: PortedRun, tmp_path: Path) -> None:
    coordination = tmp_path / "coord"
    coordination.mkdir()
    result, _ = probe(run_ported, tmp_path, "--coordinationDir", str(coordination),
                      env={"PROBE_COORDINATION": str(coordination)})
    assert result is not None and result["log_in_coordination"] is True
    _, err = probe(run_ported, tmp_path / "x", "--coordinationDir", str(tmp_path / "missing"), check=False)
    assert "--coordinationDir" in err and "Traceback" not in err


@pytest.mark.parametrize(("policy", "fail", "kept"), [
    ("never", False, True), ("always", False, False), ("onSuccess", False, False), ("onError", False, True),
])
def test_clean_work_dir(run_ported: PortedRun, tmp_path: Path, policy: str, fail: bool, kept: bool) -> None:
    work = tmp_path / "work"
    probe(run_ported, tmp_path, "--workDir", str(work), "--cleanWorkDir", policy)
    found = [p for p in work.glob("flow-kept-*/scratch-*") if p.read_text() == "kept?"] if work.exists() else []
    assert bool(found) == kept


def test_bad_worker_kills_jobs(run_ported: PortedRun, tmp_path: Path) -> None:
    result, err = probe(run_ported, tmp_path, "--badWorker", "1", "--badWorkerFailInterval", "0",
                        "--retryCount", "0", check=False)
    assert result is None and "signal 9, SIGKILL" in err, err


def test_caching_options(run_ported: PortedRun, tmp_path: Path) -> None:
    result, err = probe(run_ported, tmp_path, "--disableCaching")
    assert result is not None and "keeps no file cache" not in err
    result, err = probe(run_ported, tmp_path / "c", "--caching", "true")
    assert result is not None and "keeps no file cache" in err


def test_max_service_jobs(run_ported: PortedRun, tmp_path: Path) -> None:
    run_ported("services_limit.py", str(tmp_path / "js"), "--noProgress", "--maxServiceJobs", "1",
               "--directory", str(tmp_path))
    log = (tmp_path / "log").read_text().splitlines()
    assert sorted(line.split()[0] for line in log) == ["one", "two"]
    assert all(line.endswith("with 0 other(s) up") for line in log), log


def test_config_file_and_environment_defaults(run_ported: PortedRun, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# as 'toil config' writes it\nlogLevel: DEBUG\nworkDir: null\n"
                      "linkImports: true\nsomeToilOnlyOption: 3\n")
    done = run_ported("services_limit.py", str(tmp_path / "js"), "--noProgress", "--config", str(config),
                      "--directory", str(tmp_path))
    assert "] DEBUG" in done.stderr
    (tmp_path / "log").unlink()
    done = run_ported("services_limit.py", str(tmp_path / "js2"), "--noProgress", "--directory", str(tmp_path),
                      env={"FLOW_LOGLEVEL": "DEBUG"})
    assert "] DEBUG" in done.stderr


def test_optparse_parser(run_ported: PortedRun, tmp_path: Path) -> None:
    done = run_ported("optparse_sort.py", "--jobStore", str(tmp_path / "js"), "--words", "c,a,b",
                      "--logDebug", "--maxCores", "1")
    assert done.stdout.strip() == "['a', 'b', 'c']"
    assert "] DEBUG" in done.stderr
