"""The port tool changes import paths and "Toil" names, and nothing else."""

from __future__ import annotations

from flow.core.port import port_source

TOIL_SCRIPT = '''\
import toil.job
from toil.common import Toil  # the context manager
from toil.job import Job, PromisedRequirement as PR
from toil.lib.io import mkdtemp

toil_note = "Toil stays Toil in strings"

def main(toil_dir):
    parser = Job.Runner.getDefaultArgumentParser()
    Job.Runner.addToilOptions(parser)
    with Toil(parser.parse_args()) as toil:
        return toil.start(toil.job.Job())
'''


def test_imports_and_names_change_strings_and_variables_do_not() -> None:
    ported = port_source(TOIL_SCRIPT)
    assert "import flow.core.job\n" in ported
    assert "from flow.core.common import Flow  # the context manager" in ported
    assert "from flow.core.job import Job, PromisedRequirement as PR" in ported
    assert "from flow.lib.io import mkdtemp" in ported
    assert '"Toil stays Toil in strings"' in ported
    assert "Job.Runner.addFlowOptions(parser)" in ported
    assert "with Flow(parser.parse_args()) as toil:" in ported
    assert "def main(toil_dir):" in ported
    compile(ported, "ported.py", "exec")


def test_unknown_module_keeps_its_path_under_flow() -> None:
    assert port_source("from toil.server import app\n") == "from flow.core.server import app\n"
