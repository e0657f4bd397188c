"""Slurm's dynamic nodes as flow reads them (recorded output of the real elastic cluster, see
``data/slurm/record-elastic.sh``), the slurm provisioner's names and command templates, and the
checks ``--provisioner slurm`` makes before a run starts."""

from __future__ import annotations

import argparse

import pytest

from flow.batchsystems.abstract import SubmissionError
from flow.batchsystems.hpc import CommandError
from flow.batchsystems.slurm import parse_sbatch
from flow.batchsystems.slurm_nodes import NO_NODE_YET, parse_nodes, run_feature, run_letters
from flow.core.autoscale import check_options
from flow.core.exceptions import FlowError
from flow.core.options import add_flow_options
from flow.provisioners.contract import ProvisionerConfig, ScalerConfigError
from flow.provisioners.slurm import (
    LAUNCH_FIELDS,
    SlurmProvisioner,
    check_template,
    fill,
    node_prefix,
    type_feature,
)
from tests.unit.test_slurm_parsing import recorded

LAUNCH = "add-local-node {name} {cores} {memory_mb} {features}"


def test_a_busy_draining_node_and_an_idle_one() -> None:
    busy = parse_nodes(recorded("scontrol_nodes_busy_draining"))
    node = busy["fpppppppp9"]
    assert (node.cpus, node.cpus_used, node.memory_mb, node.memory_used_mb) == (1, 1, 1024, 100)
    assert node.busy and node.drained and not node.down
    assert node.features == ("elastic", "flowpppppppp", "flowpppppppp_small")
    assert busy["vm"].features == ()  # "(null)"
    idle = parse_nodes(recorded("scontrol_nodes_idle"))["fpppppppp9"]
    assert not idle.busy and not idle.drained and {"IDLE", "DYNAMIC_NORM"} <= idle.state


def test_a_failing_scontrol_is_an_error_with_its_words() -> None:
    with pytest.raises(CommandError, match="Invalid node name specified"):
        parse_nodes(recorded("scontrol_delete_unknown"))


@pytest.mark.parametrize("name", ["sbatch_no_node_feature", "sbatch_unknown_feature"])
def test_slurms_refusals_before_the_runs_first_node_are_recognised(name: str) -> None:
    """With no node of the run yet, sbatch refuses its jobs: these words make flow keep them back."""
    with pytest.raises(SubmissionError) as refused:
        parse_sbatch(recorded(name), "job")
    assert any(words in refused.value.detail.lower() for words in NO_NODE_YET), refused.value.detail


def test_names_and_features_carry_the_run() -> None:
    run = "0a3e77d883193170"
    assert run_letters(run) == "akdohhni"
    assert node_prefix(run) == "fakdohhni" and run_feature(run) == "flowakdohhni"
    assert type_feature(run, "big-1") == "flowakdohhni_big1"
    assert node_prefix("ffffffff00000000") != node_prefix("fffffffe00000000")


def test_templates_are_checked_and_filled() -> None:
    words = check_template("--nodeLaunchCommand", LAUNCH, LAUNCH_FIELDS)
    assert fill(words, {"name": "fa1", "cores": 2, "memory_mb": 1024, "features": "x,y"}) == [
        "add-local-node", "fa1", "2", "1024", "x,y"]
    with pytest.raises(ScalerConfigError, match=r"unknown placeholder\(s\) \{mem\}"):
        check_template("--nodeLaunchCommand", "start {name} {mem}", LAUNCH_FIELDS)
    with pytest.raises(ScalerConfigError, match="needs --nodeTerminateCommand"):
        check_template("--nodeTerminateCommand", None, LAUNCH_FIELDS)
    with pytest.raises(ScalerConfigError, match="cannot be read"):
        check_template("--nodeLaunchCommand", "start '{name}", LAUNCH_FIELDS)


def test_new_names_skip_numbers_slurm_uses_and_those_the_run_used() -> None:
    extra = {"launch": LAUNCH, "terminate": "remove-local-node {name}"}
    provisioner = SlurmProvisioner(ProvisionerConfig("0a3e77d883193170", (), extra))
    known = parse_nodes(recorded("scontrol_nodes_idle"))  # vm and fpppppppp9
    first = provisioner._new_names(known, 2)
    assert first == ["fakdohhni1", "fakdohhni2"]
    assert provisioner._new_names(known, 8) == [f"fakdohhni{n}" for n in (3, 4, 5, 6, 7, 8, 10, 11)]  # 9: fpppppppp9


def options(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flow_options(parser, jobstore_as_flag=True)
    return parser.parse_args(list(args))


def test_the_slurm_provisioner_needs_slurm_and_both_commands() -> None:
    base = ["--provisioner", "slurm", "--nodeTypes", "small:1/1G"]
    commands = ["--nodeLaunchCommand", LAUNCH, "--nodeTerminateCommand", "remove-local-node {name}"]
    check_options(options(*base, *commands, "--batchSystem", "slurm"))
    with pytest.raises(FlowError, match="--provisioner slurm starts nodes for --batchSystem slurm, not single_machine"):
        check_options(options(*base, *commands, "--batchSystem", "single_machine"))
    with pytest.raises(FlowError, match="needs --nodeLaunchCommand"):
        check_options(options(*base, "--batchSystem", "slurm"))
    with pytest.raises(FlowError, match="--nodeRegisterTimeout 0 must be more than 0"):
        check_options(options(*base, *commands, "--batchSystem", "slurm", "--nodeRegisterTimeout", "0"))
