"""Step logs through a real server and the real (reference) agent running real shell
steps: what a step prints is what GetJobLog and FollowJobLog return, up to the kill
for a cancel (with the stop line), cut at the limit with one marker line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import grpc
import pytest
from buildcontrol_client import Agent, AgentOptions
from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.rpc.job_log_calls import agent_for, ended, stored_log
from tests.support.build_watch import jobs_running
from tests.support.pipelines import pipeline
from tests.support.servers import Running, running_server
from tests.support.tcp_proxy import TcpProxy

WAIT = 30.0
KNOWN = "".join(f"line {i}\n" for i in range(2000))
PRINT_KNOWN = 'for i in $(seq 0 1999); do echo "line $i"; done'


async def submit(server: Running, command: str) -> tuple[str, str]:
    build = (await server.stub.SubmitBuild(pipeline(command=command))).build
    return build.build_id, build.stages[0].jobs[0].job_id


async def whole_log(
    server: Running, build_id: str, job_id: str
) -> build_control_pb2.GetJobLogResponse:
    request = build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id)
    return await server.stub.GetJobLog(request, timeout=WAIT)


async def test_the_log_read_back_is_what_the_step_printed(server: Running, tmp_path: Path) -> None:
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(server, PRINT_KNOWN + "; echo oops >&2")
        assert (await ended(server, build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
    log = await whole_log(server, build_id, job_id)
    assert log.complete
    assert log.data.decode() == f"--- step 0: {PRINT_KNOWN}; echo oops >&2\n{KNOWN}oops\n"
    assert log.size == len(log.data)
    # The agent's local copy is the same bytes.
    assert (tmp_path / "work" / f"{job_id}.log").read_bytes() == log.data


async def test_a_cancel_keeps_the_output_up_to_the_kill_and_says_who_stopped_it(
    server: Running, tmp_path: Path
) -> None:
    # The agent reports the stop as soon as the step is gone and sends the log's last
    # bytes after: a follower of the job, open across the cancel, still ends with them.
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(
            server, "echo before; trap 'echo got TERM; exit 3' TERM; sleep 600 & wait"
        )
        await jobs_running(server.stub, build_id, 1)
        follow = server.stub.FollowJobLog(
            build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id), timeout=WAIT
        )
        seen = b""
        async for message in follow:
            seen += message.data
            if b"before\n" in seen:
                break
        cancel = build_control_pb2.CancelRequest(
            build_id=build_id, reason="wrong branch", requested_by="alice"
        )
        events = [e async for e in server.stub.Cancel(cancel, timeout=WAIT)]
        assert events[-1].finished.status == build_pb2.BUILD_STATUS_CANCELED
        seen += b"".join([message.data async for message in follow])
    log = await whole_log(server, build_id, job_id)
    text = log.data.decode()
    assert log.complete and log.data == seen
    assert text.startswith("--- step 0: ")
    assert "\nbefore\ngot TERM\n--- stopped: SIGTERM after " in text
    assert text.endswith(" s by alice: wrong branch ---\n")


async def test_follow_streams_the_log_as_printed_and_ends_with_the_job(
    server: Running, tmp_path: Path
) -> None:
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(server, "echo one; read -t 600 line < /dev/null; echo two")
        follow = server.stub.FollowJobLog(
            build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id, from_offset=0),
            timeout=WAIT,
        )
        received = b"".join([message.data async for message in follow])
    assert received.endswith(b"one\ntwo\n")
    assert received == (await whole_log(server, build_id, job_id)).data


async def test_follow_from_an_offset_sends_only_what_follows_it(
    server: Running, tmp_path: Path
) -> None:
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(server, "echo abcdef")
        await ended(server, build_id)
    whole = (await whole_log(server, build_id, job_id)).data
    follow = server.stub.FollowJobLog(
        build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id, from_offset=5),
        timeout=WAIT,
    )
    assert b"".join([m.data async for m in follow]) == whole[5:]
    page = await server.stub.GetJobLog(
        build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id, offset=2, limit=3)
    )
    assert (page.data, page.offset, page.size) == (whole[2:5], 2, len(whole))


async def test_the_limit_cuts_exactly_and_one_line_says_how_much_was_dropped(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data", log_limit_bytes=10_000) as server:
        async with agent_for(server, tmp_path / "work"):
            # 30,000 bytes of 'y\n' after the step's header line.
            build_id, job_id = await submit(server, "yes | head -c 30000")
            await ended(server, build_id)
        log = await whole_log(server, build_id, job_id)
    header = b"--- step 0: yes | head -c 30000\n"
    kept = (header + b"y\n" * 15_000)[:10_000]
    dropped = len(header) + 30_000 - 10_000
    marker = f"\n--- log limit reached: {dropped} bytes dropped (limit 10000 bytes) ---\n"
    assert log.data == kept + marker.encode()
    assert (tmp_path / "work" / f"{job_id}.log").stat().st_size == len(log.data)


async def test_non_utf8_and_ansi_bytes_are_stored_as_printed(
    server: Running, tmp_path: Path
) -> None:
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(server, r"printf '\377\376 \033[31mred\033[0m\n'")
        await ended(server, build_id)
    log = await whole_log(server, build_id, job_id)
    assert log.data.endswith(b"\xff\xfe \x1b[31mred\x1b[0m\n")


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"job_id": "bffffffffffffffffffff-j0"}, grpc.StatusCode.NOT_FOUND),
        ({"job_id": ""}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"offset": -1}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"limit": 2 * 1024 * 1024}, grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_bad_log_reads_get_exact_statuses(
    server: Running, fields: dict[str, object], code: grpc.StatusCode
) -> None:
    build_id, job_id = await submit(server, "true")
    request = build_control_pb2.GetJobLogRequest(build_id=build_id, job_id=job_id)
    for name, value in fields.items():
        setattr(request, name, value)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.GetJobLog(request)
    assert raised.value.code() == code
    follow = build_control_pb2.FollowJobLogRequest(
        build_id=request.build_id, job_id=request.job_id, from_offset=request.offset
    )
    if "limit" not in fields:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in server.stub.FollowJobLog(follow):
                pass
        assert raised.value.code() == code


async def test_an_unknown_build_is_not_found(server: Running) -> None:
    request = build_control_pb2.GetJobLogRequest(
        build_id="bffffffffffffffffffff", job_id="bffffffffffffffffffff-j0"
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.GetJobLog(request)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_connection_cut_in_mid_upload_loses_and_doubles_nothing(
    server: Running, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="buildcontrol.agent")
    proxy = TcpProxy(int(server.target.rsplit(":", 1)[1]))
    target = await proxy.start()
    agent = Agent(target, "agent-cut", options=AgentOptions(work_dir=tmp_path / "work"))
    task = asyncio.create_task(agent.run())
    try:
        # About 4.8 MB, printed as fast as the agent reads it.
        build_id, job_id = await submit(server, "seq 1 700000")
        follow = server.stub.FollowJobLog(
            build_control_pb2.FollowJobLogRequest(build_id=build_id, job_id=job_id), timeout=WAIT
        )
        seen = 0
        async for message in follow:
            seen += len(message.data)
            if seen > 1_000_000:
                break
        follow.cancel()
        proxy.cut()  # the agent stream and the upload in flight drop at once
        assert (await ended(server, build_id)).status == build_pb2.BUILD_STATUS_SUCCEEDED
    finally:
        agent.request_shutdown()
        await asyncio.wait_for(task, WAIT)
        await proxy.close()
    assert proxy.connections >= 2
    # The upload did fail on the cut, and was taken up again from its acknowledged offset.
    assert any("log upload failed" in r.getMessage() for r in caplog.records)
    printed = "".join(f"{i}\n" for i in range(1, 700_001)).encode()
    assert await stored_log(server, build_id, job_id) == b"--- step 0: seq 1 700000\n" + printed


async def test_reflection_alone_describes_and_calls_the_log_methods(
    server: Running, tmp_path: Path
) -> None:
    """What grpcurl and `buf curl` do: learn the methods from the server, then call one
    with messages built from what it said (no generated code)."""
    async with agent_for(server, tmp_path / "work"):
        build_id, job_id = await submit(server, "echo reflected")
        await ended(server, build_id)
    stub = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    pool = descriptor_pool.DescriptorPool()
    wanted = ["buildcontrol.v1.BuildControl", "buildcontrol.v1.AgentService"]
    requests = [reflection_pb2.ServerReflectionRequest(file_containing_symbol=s) for s in wanted]
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    async for response in stub.ServerReflectionInfo(iter(requests)):
        for raw in response.file_descriptor_response.file_descriptor_proto:
            proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
            files[proto.name] = proto
    for name in ("google/protobuf/duration.proto", "google/protobuf/timestamp.proto"):
        files.pop(name, None)
        pool.AddSerializedFile(
            descriptor_pool.Default().FindFileByName(name).serialized_pb  # type: ignore[attr-defined]
        )
    while files:  # dependencies first
        for name, proto in list(files.items()):
            if all(d not in files for d in proto.dependency):
                pool.Add(proto)
                del files[name]
    control = pool.FindServiceByName("buildcontrol.v1.BuildControl")
    assert {"GetJobLog", "FollowJobLog"} <= {m.name for m in control.methods}
    upload = pool.FindServiceByName("buildcontrol.v1.AgentService").methods_by_name["UploadLogs"]
    assert upload.client_streaming and not upload.server_streaming
    method = control.methods_by_name["GetJobLog"]
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    call = server.channel.unary_unary(
        "/buildcontrol.v1.BuildControl/GetJobLog",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    answer = await call(request_class(build_id=build_id, job_id=job_id))
    assert answer.data.endswith(b"reflected\n")


async def test_secret_env_values_are_masked_in_the_log_and_never_returned(
    server: Running, tmp_path: Path
) -> None:
    secret = "hunter2-very-secret"
    request = pipeline(command='echo "token=$TOKEN plain=$PLAIN"; printf "%s" "$TOKEN" | fold -w 4')
    request.stages[0].jobs[0].env["PLAIN"] = "visible"
    request.stages[0].jobs[0].secret_env["TOKEN"] = secret
    build = (await server.stub.SubmitBuild(request)).build
    job_id = build.stages[0].jobs[0].job_id
    async with agent_for(server, tmp_path / "work"):
        await ended(server, build.build_id)
    log = await whole_log(server, build.build_id, job_id)
    assert b"token=*** plain=visible\n" in log.data
    assert secret.encode() not in log.data
    assert secret.encode() not in (tmp_path / "work" / f"{job_id}.log").read_bytes()
    got = await server.stub.GetBuild(build_control_pb2.GetBuildRequest(build_id=build.build_id))
    assert secret.encode() not in got.SerializeToString()
    assert secret.encode() not in build.SerializeToString()


async def test_a_name_in_env_and_secret_env_is_refused_and_nothing_is_made(
    server: Running,
) -> None:
    request = pipeline()
    request.stages[0].jobs[0].env["TOKEN"] = "a"
    request.stages[0].jobs[0].secret_env["TOKEN"] = "b"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await server.stub.SubmitBuild(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "secret_env" in (raised.value.details() or "")
    listing = await server.stub.ListBuilds(build_control_pb2.ListBuildsRequest())
    assert not listing.builds
