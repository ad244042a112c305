"""What app.py wires in: the interceptor, the tokens it checks, the listening ports."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import grpc

from buildcontrol_server.domain.errors import NotFound
from buildcontrol_server.domain.model import Build
from buildcontrol_server.logs.service import JobState
from buildcontrol_server.rpc.auth_interceptor import AuthInterceptor
from buildcontrol_server.security import header_check, tls
from buildcontrol_server.security.access_rules import LOG_TAIL_SECONDS
from buildcontrol_server.security.caller import submitter_of
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.job_tokens import (
    KEY_FILE_NAME,
    JobAccess,
    JobKeyError,
    JobTokens,
    new_key,
    read_key,
)
from buildcontrol_server.security.principals import JobScope
from buildcontrol_server.security.settings import SecuritySettings
from buildcontrol_server.security.token_registry import TokenRegistry, bootstrap
from buildcontrol_server.security.token_sources import FileTokenSource, TokenSource, token_source
from buildcontrol_server.security.tokens import TokensFileError

# The first start's note about the tokens it created (stderr, like every log line).
BOOTSTRAP_LOG = logging.getLogger("buildcontrol.bootstrap")

TOKENS_FILE_NAME = "tokens.json"
# How often open calls are checked against the tokens and their jobs. On the tokens
# file a stat is all it costs; the file is changed by another process (the token CLI,
# an editor, configuration management) that cannot notify the server, and no
# file-change notification (inotify) exists in the standard library; every new call
# checks it too. In the database it is one query of a generation number, a backstop
# for the NOTIFY that every change sends (a listener that reconnects misses those).
OPEN_CALLS_CHECK_SECONDS = 0.5
# A replica's open calls of job tokens whose build another replica runs cost a read
# of the store each: looked at every this many passes (5 s). An upload of a finished
# job ends by itself; this only bounds one that lingers.
ELSEWHERE_CHECK_PASSES = 10
# Ends of finished jobs remembered for the checks of their log's tail (the oldest
# forgotten first).
ENDS_REMEMBERED = 10_000

# The live build of an id, if there is one (the registry's actors).
LiveBuild = Callable[[str], Build | None]
# (build id, job id) -> when the job ended (wall clock), None while it has not.
JobEnd = Callable[[str, str], Awaitable[float | None]]


def default_tokens_file(data_dir: Path) -> Path:
    return data_dir / TOKENS_FILE_NAME


def _job_is_live(live_build: LiveBuild, replicas: bool) -> Callable[[JobScope], bool | None]:
    def is_live(scope: JobScope) -> bool | None:
        build = live_build(scope.build_id)
        if build is None:
            # One server: no live build here is no live build. A replica does not
            # know: another one may run it.
            return None if replicas else False
        job = build.job(scope.job_id)
        return job is not None and not job.terminal

    return is_live


def job_in_log_tail(
    job_end: JobEnd, wall: Callable[[], float]
) -> Callable[[JobScope], Awaitable[bool]]:
    # When each job asked about ended (-inf: no such job), so that a stale token tried
    # again and again costs one read of the store, not one per call.
    ends: collections.OrderedDict[JobScope, float] = collections.OrderedDict()

    async def in_tail(scope: JobScope) -> bool:
        ended = ends.get(scope)
        if ended is None:
            try:
                end = await job_end(scope.build_id, scope.job_id)
            except NotFound:
                end = -math.inf
            if end is None:
                return False  # not ended: a caller that asks is told by is_live
            ended = ends[scope] = end
            if len(ends) > ENDS_REMEMBERED:
                ends.popitem(last=False)
        return wall() - ended <= LOG_TAIL_SECONDS

    return in_tail


def _job_is_live_elsewhere(job_state: JobState) -> Callable[[JobScope], Awaitable[bool]]:
    async def is_live(scope: JobScope) -> bool:
        try:
            return await job_state(scope.build_id, scope.job_id) is None
        except NotFound:
            return False  # purged, or never was

    return is_live


class ServerSecurity:
    def __init__(
        self,
        settings: SecuritySettings,
        data_dir: Path,
        live_build: LiveBuild | None = None,
        store_url: str | None = None,
        job_state_elsewhere: JobState | None = None,
        job_end: JobEnd | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`store_url`: the store's (None: SQLite); on PostgreSQL the tokens are the
        database's. `job_state_elsewhere`: on a replica, the state of a job whose build
        another replica may run (the store's). `job_end`: when a job ended, for the
        uploads of its log's tail."""
        self.settings = settings
        self._explicit_file = settings.tokens_file is not None
        self._data_dir = data_dir
        self.tokens = (
            TokenRegistry(
                token_source(settings.tokens_file, default_tokens_file(data_dir), store_url)
            )
            if settings.auth
            else None
        )
        self._job_key_file = data_dir / KEY_FILE_NAME
        self._live_build = live_build
        self._job_state_elsewhere = job_state_elsewhere
        self._job_end = job_end
        self._wall = wall
        # Made in prepare(), from the key file; None with auth off (no job tokens).
        self.job_tokens: JobTokens | None = None
        self.rules = CancelRules(settings.restricted_pipelines)
        self.interceptor = AuthInterceptor(
            self.tokens,
            self.rules,
            agents_need_certificate=tls.agents_need_certificate(settings),
        )
        self._checker: asyncio.Task[None] | None = None
        header_check.quiet_grpc_encoding_errors()

    async def prepare(self) -> None:
        """Read the tokens, or on a first start create them. Raises
        SecuritySetupError. A named (--tokens-file) file that does not exist is an
        error, not a first start: a typo must not mint a new admin token."""
        if self.settings.tls is not None:
            tls.check_files(self.settings.tls)  # named here, not as "Failed to bind"
        if self.tokens is None:
            return
        source = self.tokens.source
        if self._explicit_file and not isinstance(source, FileTokenSource):
            raise TokensFileError(
                "--tokens-file: on PostgreSQL the tokens live in the database (manage "
                "them with `buildcontrol token ... --store URL`)"
            )
        try:
            explicit = isinstance(source, FileTokenSource) and self._explicit_file
            if explicit and not await source.exists():
                assert isinstance(source, FileTokenSource)
                raise TokensFileError(f"tokens file {source.path} does not exist")
            created = await bootstrap(source, self._data_dir)
            if created is not None:
                # Paths only, never a token: through the log, so that with --log-format
                # json every line on stderr is JSON, this one included.
                BOOTSTRAP_LOG.info("%s", created.hint())
            await self.tokens.load()
        except BaseException as error:
            await source.close()
            if isinstance(error, Exception) and not isinstance(error, TokensFileError):
                # The database refused or went away (the file's problems are
                # TokensFileError already): the server must not start without tokens.
                raise TokensFileError(f"{source.description}: cannot be read: {error}") from None
            raise
        if self._live_build is not None:
            self.job_tokens = await self._load_job_tokens(source)
            elsewhere = self._job_state_elsewhere
            live_here = _job_is_live(self._live_build, replicas=elsewhere is not None)
            access = JobAccess(self.job_tokens, live_here)
            if elsewhere is not None:
                access = replace(access, is_live_elsewhere=_job_is_live_elsewhere(elsewhere))
            if self._job_end is not None:
                access = replace(access, in_log_tail=job_in_log_tail(self._job_end, self._wall))
            self.interceptor.admit_jobs(access)

    async def _load_job_tokens(self, source: TokenSource) -> JobTokens:
        """The data directory's key file, or on PostgreSQL the database's key: every
        replica verifies what another minted. A key file of an earlier version is
        offered to the database first, so the tokens of its running jobs stay valid."""
        key_file = self._job_key_file
        proposed = read_key(key_file) if key_file.exists() else new_key()
        try:
            shared = await source.shared_job_key(proposed)
        except Exception as error:
            raise JobKeyError(f"{source.description}: job-token key: {error}") from None
        return JobTokens.load_or_create(key_file) if shared is None else JobTokens(shared)

    def start_checking(self) -> None:
        """Check open calls against the tokens file and their jobs, every
        OPEN_CALLS_CHECK_SECONDS, until stop_checking()."""
        if self.tokens is not None and self._checker is None:
            self._checker = asyncio.create_task(self._check_open_calls())

    async def stop_checking(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            await asyncio.gather(self._checker, return_exceptions=True)
            self._checker = None
        if self.tokens is not None:
            await self.tokens.close()

    async def _check_open_calls(self) -> None:
        assert self.tokens is not None
        for passes in itertools.count(1):
            await asyncio.sleep(OPEN_CALLS_CHECK_SECONDS)
            await self.tokens.poll()  # a change ends the calls of revoked tokens itself
            self.interceptor.end_finished_job_calls()
            if passes % ELSEWHERE_CHECK_PASSES == 0:
                await self.interceptor.end_finished_elsewhere()

    def supersede_check(self, newer: Build) -> Callable[[Build], None] | None:
        """The cancel-policy check of `newer`'s submitter, for supersedes re-applied on
        recovery; None with authentication off."""
        if self.tokens is None:
            return None
        return submitter_of(newer, self.rules).check_cancel

    def add_ports(self, server: grpc.aio.Server, listen: str) -> tls.Ports:
        return tls.add_ports(server, listen, self.settings)

    def describe(self, agent_port: int | None) -> str:
        """The tail of the server's ready line: agent address, TLS, auth."""
        parts = []
        if agent_port is not None and self.settings.agent_listen is not None:
            host = self.settings.agent_listen.rsplit(":", 1)[0]
            parts.append(f"agents on {host}:{agent_port}")
        if self.settings.tls is not None:
            mutual = " (agents: client certificates)" if self.settings.tls.client_ca else ""
            parts.append(f"TLS{mutual}")
        if self.tokens is None:
            parts.append("auth off")
        elif isinstance(self.tokens.source, FileTokenSource):
            parts.append(f"auth on ({self.tokens.source.path})")
        else:
            parts.append(f"auth on ({self.tokens.source.description})")
        return "".join(f", {part}" for part in parts)
