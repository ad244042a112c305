"""Seeds that failed once, kept so they run in every `make test`. A seed fixes the
sequence of moves, not the interleaving with the server's tasks, so a kept seed finds
its defect often, not always; the fresh seeds of each run keep looking.

Each entry: seed -> what it found (on which code), so a new failure can be routed."""

from __future__ import annotations

SCRIPTED = {
    1: "main: SubmitBuild answered INTERNAL during a store outage (defect 9)",
    22: "main: actor died (InvalidStateError), build stays RUNNING, cancel refused (defect 1)",
    147: "main: a GRACEFUL stop re-sent in Hello, Welcome seen, ended FORCED (defect 2)",
    161: "main: actor died, build stays RUNNING with its slots held (defect 1)",
    180: "main: actor died, build stays CANCELING, Cancel never finishes (defect 1)",
    1017: "main and merged: a RUNNING build with nothing on an agent refused its cancel"
    " (RUNNING -> CANCELED is not an allowed move); fixed in domain/cancellation.py",
    1004: "merged fixes: slot of a FORCED job held for good, its agent had already"
    " reported it stopped (defect 8's slot release misses that case): the result, or a"
    " Hello without the job, came while the FORCED write committed; fixed in"
    " actors/report_intake.py and actors/reconciliation.py"
    " (tests/rpc/test_cancel_found_by_walks_rpc.py)",
    1009: "merged fixes: slot of a FORCED job held for good (as 1004)",
    1021: "merged fixes: slots of FORCED jobs held for good (as 1004)",
    1022: "merged fixes: slot of a FORCED job held for good (as 1004)",
    1028: "merged fixes: slot of a FORCED job held for good (as 1004)",
    1037: "merged fixes: slot of a FORCED job held for good (as 1004)",
    200061: "faults3: a GRACEFUL stop acknowledged, the job ended FORCED: the Hello of a"
    " stream a newer one had overtaken judged a job whose AssignJob went out on the newer"
    " one; fixed in actors/build_actor.py (tests/rpc/test_cancel_found_by_walks_rpc.py)",
    300134: "faults3: slot of a FORCED job held for good, the agent still running it and"
    " never stopped: its Hello claimed the job while the FORCED write committed, so no"
    " StopJob went out; fixed in actors/reconciliation.py"
    " (tests/rpc/test_cancel_found_by_walks_rpc.py)",
    306766: "faults3: as 300134",
    1015: "faults3: the settle's responder served on for 20 s after being told to stop"
    " (asyncio.wait_for on Python 3.11 swallowed the cancel as the Welcome came);"
    " fixed in scripted_agent.py",
    1016: "faults3: as 1015",
    1039: "faults3: as 1015",
    1018: "merged fixes: the run hung (> 90 s) in the settle's auditor check, once",
    3016: "main with faults-actors and faults-protocol: a GRACEFUL stop acknowledged"
    " (ReportsCommitted), the job ended FORCED: its AssignJob went out on a new stream"
    " after that stream's Hello, whose reconciliation took the job for lost; fixed in"
    " actors/build_actor.py (tests/rpc/test_cancel_found_by_walks_rpc.py)",
}

REFERENCE = {
    1: "main: a `setsid` child outlives its cancelled job (defect 6)",
}
