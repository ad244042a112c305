"""The command's habits: `--version`, `health` against a real server (and against
none), BUILDCONTROL_ADDR, durations like `1m30s`, a piped `submit` printing only the id,
`error: CODE: message`, and a reader that goes away (`| head -1`)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from buildcontrol_server.version import version

from tests.support.agent_peer import AgentPeer
from tests.support.ports import free_port
from tests.support.processes import BUILDCONTROL, serve

WAIT = 20.0
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *BUILDCONTROL, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_version_prints_the_package_version() -> None:
    code, out, _ = await run("--version")
    assert code == 0
    assert out.strip() == f"buildcontrol {version()}"
    assert version() != "0+unknown", "the checkout is installed (pip install -e)"


async def test_health_says_serving_then_not_serving_while_draining(tmp_path: Path) -> None:
    async with serve(tmp_path / "data") as server:
        code, out, _ = await run("health", "--server", server.target)
        assert (code, out.strip()) == (0, "SERVING")
        # The default address comes from BUILDCONTROL_ADDR when --server is not given.
        code, out, _ = await run("health", env={"BUILDCONTROL_ADDR": server.target})
        assert (code, out.strip()) == (0, "SERVING")
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0


async def test_health_of_an_address_nobody_serves_exits_3() -> None:
    code, _, err = await run("health", "--server", f"127.0.0.1:{free_port()}", "--timeout", "1")
    assert code == 3
    assert err.startswith("error: "), err


async def test_piped_submit_prints_the_id_a_script_can_use_with_durations_and_addr(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        code, out, err = await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env)
        assert code == 0, err
        build_id = out.strip()
        assert build_id and " " not in build_id  # B=$(buildcontrol submit f.yaml)
        # No agent: the queued build is CANCELED at once; "5s" is a grace like "5".
        code, out, err = await run("cancel", build_id, "--grace", "1m30s", env=env)
        assert code == 0, err
        code, out, _ = await run("get", build_id, "--json", env=env)
        assert json.loads(out)["cancel"]["gracePeriodSeconds"] == 90.0


async def test_a_bad_duration_is_a_usage_error_naming_the_flag() -> None:
    code, _, err = await run("cancel", "b1", "--grace", "5 parsecs")
    assert code == 2
    assert "--grace" in err and "not a duration" in err


async def test_a_missing_pipeline_file_is_error_code_message() -> None:
    code, _, err = await run("submit", "/nonexistent/pipeline.yaml", "--server", "127.0.0.1:1")
    assert code == 4
    assert err.strip().splitlines()[-1] == (
        "error: NOT_FOUND: No such file or directory: /nonexistent/pipeline.yaml"
    )


async def test_a_reader_that_went_away_ends_the_command_quietly(tmp_path: Path) -> None:
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        code, out, _ = await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env)
        assert code == 0
        read_end, write_end = os.pipe()
        os.close(read_end)  # like `| head -1` that has already exited
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "get", out.strip(), stdout=write_end,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
        )  # fmt: skip
        os.close(write_end)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)
        assert process.returncode == 141
        assert err.decode() == ""  # no "Broken pipe", no traceback


async def test_watch_rides_out_a_server_restart_and_follows_the_build_to_its_end(
    tmp_path: Path,
) -> None:
    port = free_port()
    data = tmp_path / "data"
    address = ("--listen", f"127.0.0.1:{port}")
    env = {"BUILDCONTROL_ADDR": f"127.0.0.1:{port}"}
    async with serve(data, *address) as first:
        code, out, err = await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env)
        assert code == 0, err
        build_id = out.strip()
        watcher = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "watch", build_id, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
        )  # fmt: skip
        assert watcher.stdout is not None and watcher.stderr is not None
        snapshot = await asyncio.wait_for(watcher.stdout.readline(), WAIT)
        assert build_id in snapshot.decode()
        first.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.process.wait(), WAIT) == 0
    said = (await asyncio.wait_for(watcher.stderr.readline(), WAIT)).decode()
    assert "reconnecting in" in said, said
    # The same data dir and address: the build is still there, QUEUED.
    async with serve(tmp_path / "second", "--data-dir", str(data), *address):
        code, _, err = await run("cancel", build_id, "--reason", "after restart", env=env)
        assert code == 0, err
        out, err_rest = await asyncio.wait_for(watcher.communicate(), WAIT)
    assert watcher.returncode == 5  # the build was CANCELED
    assert "fresh snapshot" in err_rest.decode()
    assert "CANCELED" in out.decode()


# Ctrl-C as at a terminal: a test session started in the background (`make test &`)
# ignores SIGINT, and an ignored signal stays ignored across exec, so Python would
# install no KeyboardInterrupt handler in the CLI. A small exec wrapper restores it
# (a preexec_fn would run Python in a forked child of a process running gRPC threads).
INTERRUPTIBLE = [
    sys.executable, "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]  # fmt: skip


async def test_ctrl_c_on_cancel_says_the_cancel_goes_on_and_it_does(tmp_path: Path) -> None:
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        agent = AgentPeer(server.target, "a1")
        await agent.connect()
        code, out, err = await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env)
        assert code == 0, err
        build_id = out.strip()
        await agent.take_job()
        canceller = await asyncio.create_subprocess_exec(
            *INTERRUPTIBLE, *BUILDCONTROL, "cancel", build_id, "--grace", "1m",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env={**os.environ, **env},
        )  # fmt: skip
        assert canceller.stdout is not None
        accepted = await asyncio.wait_for(canceller.stdout.readline(), WAIT)
        assert accepted.decode().startswith("accepted"), accepted
        canceller.send_signal(signal.SIGINT)
        _, err_bytes = await asyncio.wait_for(canceller.communicate(), WAIT)
        assert canceller.returncode == 130
        said = err_bytes.decode()
        assert "goes on on the server" in said
        assert f"follow it with: buildcontrol watch {build_id}" in said
        # It does: the build is still CANCELING, and the agent's stop still ends it.
        _, shown, _ = await run("get", build_id, "--json", env=env)
        assert json.loads(shown)["status"] == "BUILD_STATUS_CANCELING"
        stop = await agent.next("stop_job")
        agent.stopped(build_id, stop.stop_job.job_id)
        code, watched, _ = await run("watch", build_id, env=env)
        assert code == 5, watched
        await agent.leave()


async def statuses(env: dict[str, str], *build_ids: str) -> list[str]:
    found = []
    for build_id in build_ids:
        _, shown, _ = await run("get", build_id, "--json", env=env)
        found.append(json.loads(shown)["status"])
    return found


async def test_cancel_builds_dry_run_lists_and_cancels_nothing(tmp_path: Path) -> None:
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        ids = [(await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env))[1].strip()]
        ids.append((await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env))[1].strip())
        code, out, err = await run("cancel-builds", "--pipeline", "sleepy", "--dry-run", env=env)
        assert code == 0, err
        assert sorted(line.split()[0] for line in out.splitlines()) == sorted(ids)
        assert "2 build(s) would be cancelled" in err
        assert await statuses(env, *ids) == ["BUILD_STATUS_QUEUED"] * 2


async def test_cancel_builds_on_a_terminal_asks_before_cancelling_more_than_one(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data") as server:
        env = {"BUILDCONTROL_ADDR": server.target}
        ids = [(await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env))[1].strip()]
        ids.append((await run("submit", str(EXAMPLES / "sleepy.yaml"), env=env))[1].strip())
        controller, terminal = os.openpty()
        process = await asyncio.create_subprocess_exec(
            *BUILDCONTROL, "cancel-builds", "--pipeline", "sleepy", stdin=terminal,
            stdout=asyncio.subprocess.PIPE, stderr=terminal, env={**os.environ, **env},
        )  # fmt: skip
        os.close(terminal)
        prompt = b""
        while b"[y/N]" not in prompt:
            prompt += await asyncio.wait_for(asyncio.to_thread(os.read, controller, 1024), WAIT)
        assert b"cancel 2 builds?" in prompt
        os.write(controller, b"n\n")
        await asyncio.wait_for(process.communicate(), WAIT)
        os.close(controller)
        assert process.returncode == 0
        assert await statuses(env, *ids) == ["BUILD_STATUS_QUEUED"] * 2
        # --yes (or no terminal at all) does not ask.
        code, _, err = await run("cancel-builds", "--pipeline", "sleepy", "--yes", env=env)
        assert code == 0, err
        assert await statuses(env, *ids) == ["BUILD_STATUS_CANCELED"] * 2


async def test_metrics_listen_binds_the_address_given_and_serves_build_info(
    tmp_path: Path,
) -> None:
    port = free_port()
    async with serve(tmp_path / "data", "--metrics-listen", f"127.0.0.1:{port}"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        await writer.drain()
        body = (await asyncio.wait_for(reader.read(), WAIT)).decode()
        writer.close()
    assert body.startswith("HTTP/1.0 200")
    assert f'buildcontrol_build_info{{version="{version()}"}} 1.0' in body


async def test_a_bad_metrics_listen_is_a_usage_error() -> None:
    code, _, err = await run("serve", "--metrics-listen", "nowhere")
    assert code == 2
    assert "is not HOST:PORT" in err


async def test_with_log_format_json_even_the_first_start_banner_is_json(
    tmp_path: Path,
) -> None:
    async with serve(tmp_path / "data", "--auth", "on", "--log-format", "json") as server:
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.process.wait(), WAIT) == 0
    records = [json.loads(line) for line in server.log.read_text().splitlines()]
    banners = [r for r in records if r["logger"] == "buildcontrol.bootstrap"]
    assert len(banners) == 1
    assert str(tmp_path / "data" / "admin.token") in banners[0]["message"]
