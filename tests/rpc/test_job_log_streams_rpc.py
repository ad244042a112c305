"""A flooding step through a real server and the real agent: its output reaches the
server in a few long UploadLogs streams of whole chunks, not a stream per pipe read
(which is what kept both event loops, and so the stops, busy under a flood), and the
log is still exactly what the step printed."""

from __future__ import annotations

from pathlib import Path

from buildcontrol_proto.v1 import build_pb2
from prometheus_client import REGISTRY

from tests.rpc.job_log_calls import agent_for, ended, stored_log
from tests.support.pipelines import pipeline
from tests.support.servers import Running

FLOOD_BYTES = 3_000_000
FLOOD = f"yes | head -c {FLOOD_BYTES}"
UPLOADS = {
    "grpc_service": "buildcontrol.v1.AgentService",
    "grpc_method": "UploadLogs",
    "grpc_type": "client_stream",
    "grpc_code": "OK",
}


def upload_streams() -> float:
    """UploadLogs streams this process's servers answered OK so far (every test's)."""
    return REGISTRY.get_sample_value("buildcontrol_grpc_server_handled_total", UPLOADS) or 0.0


async def test_a_flood_is_uploaded_in_a_few_streams_and_stored_exactly(
    server: Running, tmp_path: Path
) -> None:
    before = upload_streams()
    async with agent_for(server, tmp_path / "work"):
        build = (await server.stub.SubmitBuild(pipeline(command=FLOOD))).build
        build_id, job_id = build.build_id, build.stages[0].jobs[0].job_id
        assert (await ended(server, build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
    # 3 MB read as fast as the pacing lets (8 MiB/s): one stream, or a few if the
    # machine is slow (one per 5 s); a stream per pipe read would be about 45.
    assert 1 <= upload_streams() - before <= 4
    stored = await stored_log(server, build_id, job_id)
    assert stored == f"--- step 0: {FLOOD}\n".encode() + b"y\n" * (FLOOD_BYTES // 2)
