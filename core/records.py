"""Names of the shared job-store records that the leader, workers and the ``flow`` command share."""

CONFIG = "config"  # WorkerConfig of the run (pickled)
ROOT = "root"  # the root job's id
RESULT = "result"  # (job id, path) of the promise Flow.start returns
STATUS = "status"  # b"running", b"succeeded" or b"failed"
LEADER = "leader"  # b"<host> <pid> <process start time>"
BATCH_SYSTEM = "batch_system"  # the --batchSystem the leader runs jobs on (for flow kill/clean)
KILL = "kill"  # present: 'flow kill' asked the leader to stop
STORY = "story-{}"  # a job that failed for good: its last events in the leader, one a line
