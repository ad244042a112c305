"""The interceptor's admission of job tokens: on a replica, a token whose build this
server does not run is admitted while the store says its job is live, refused once it
says the job finished, and answered UNAVAILABLE (not refused as finished) while the
store cannot say; its open calls end once the store says so. After a job's end its
token still uploads the log's tail (nothing else), and an upload open at the end is not
cut, for LOG_TAIL_SECONDS."""

from __future__ import annotations

from buildcontrol_server.domain.errors import ErrorCode, Unavailable
from buildcontrol_server.rpc.auth_interceptor import AuthInterceptor
from buildcontrol_server.rpc.auth_refusals import Refusal
from buildcontrol_server.rpc.job_admission import JobAdmission
from buildcontrol_server.security.access_rules import LOG_TAIL_SECONDS
from buildcontrol_server.security.caller import Caller
from buildcontrol_server.security.cancel_policy import CancelRules
from buildcontrol_server.security.job_tokens import JobAccess, JobTokens, job_principal
from buildcontrol_server.security.principals import JobScope
from buildcontrol_server.security.server_security import job_in_log_tail

GET_BUILD = "/buildcontrol.v1.BuildControl/GetBuild"
UPLOAD_LOGS = "/buildcontrol.v1.AgentService/UploadLogs"
HERE = JobScope("b" + "1" * 20, "b" + "1" * 20 + "-j0")
ELSEWHERE = JobScope("b" + "2" * 20, "b" + "2" * 20 + "-j0")
TOKENS = JobTokens(b"k" * 32)


class Store:
    """What the store says of builds another replica runs: live job ids, or an error."""

    def __init__(self) -> None:
        self.live = {ELSEWHERE.job_id}
        self.failure: Exception | None = None
        self.reads = 0

    async def is_live(self, scope: JobScope) -> bool:
        self.reads += 1
        if self.failure is not None:
            raise self.failure
        return scope.job_id in self.live


def here_only(live: set[str]) -> JobAccess:
    return JobAccess(TOKENS, lambda scope: scope.job_id in live if scope == HERE else None)


def admission(store: Store, live_here: set[str] | None = None) -> JobAdmission:
    access = here_only({HERE.job_id} if live_here is None else live_here)
    access = JobAccess(access.tokens, access.is_live, store.is_live)
    return JobAdmission(access, CancelRules())


async def decision(
    admit: JobAdmission, scope: JobScope, method: str = GET_BUILD
) -> Caller | Refusal:
    token = TOKENS.mint(scope.build_id, scope.job_id)
    return await admit.confirmed(admit.decide(method, token), method)


async def test_a_job_of_a_build_run_elsewhere_is_admitted_while_the_store_says_it_is_live() -> None:
    store = Store()
    admit = admission(store)
    admitted = await decision(admit, ELSEWHERE)
    assert isinstance(admitted, Caller) and admitted.principal.job == ELSEWHERE
    assert store.reads == 1
    store.live.clear()
    refused = await decision(admit, ELSEWHERE)
    assert isinstance(refused, Refusal)
    assert refused.error.code == ErrorCode.UNAUTHENTICATED
    assert "has finished" in refused.error.message


async def test_a_store_that_cannot_say_answers_unavailable_and_no_audit_line() -> None:
    store = Store()
    store.failure = Unavailable("the database is unreachable")
    refused = await decision(admission(store), ELSEWHERE)
    assert isinstance(refused, Refusal)
    assert refused.error.code == ErrorCode.UNAVAILABLE
    assert not refused.audited


async def test_a_build_this_server_runs_never_costs_a_store_read() -> None:
    store = Store()
    admit = admission(store)
    assert isinstance(await decision(admit, HERE), Caller)
    finished = admission(store, live_here=set())
    refused = await decision(finished, HERE)
    assert isinstance(refused, Refusal) and refused.error.code == ErrorCode.UNAUTHENTICATED
    assert store.reads == 0


async def test_open_calls_of_a_job_run_elsewhere_end_once_the_store_says_it_finished() -> None:
    store = Store()
    interceptor = AuthInterceptor(None, CancelRules())
    access = here_only({HERE.job_id})
    interceptor.admit_jobs(JobAccess(access.tokens, access.is_live, store.is_live))
    here = interceptor.open_calls.add(job_principal(HERE), None)
    first = interceptor.open_calls.add(job_principal(ELSEWHERE), None)
    second = interceptor.open_calls.add(job_principal(ELSEWHERE), None)
    upload = interceptor.open_calls.add(job_principal(ELSEWHERE), None, grace_seconds=60.0)
    assert await interceptor.end_finished_elsewhere() == 0
    assert store.reads == 1  # one read per job, not per call
    store.failure = Unavailable("the database is unreachable")
    assert await interceptor.end_finished_elsewhere() == 0
    store.failure = None
    store.live.clear()
    assert await interceptor.end_finished_elsewhere() == 2
    assert first.ended.is_set() and second.ended.is_set()
    assert "has finished" in first.reason
    assert not upload.ended.is_set()  # the log's tail goes on
    assert not here.ended.is_set()  # this server's own build: its own check's


async def test_a_finished_jobs_token_uploads_its_log_within_the_tail_and_nothing_else() -> None:
    in_tail = [True]

    async def tail(scope: JobScope) -> bool:
        return in_tail[0]

    access = JobAccess(TOKENS, lambda scope: False, in_log_tail=tail)
    admit = JobAdmission(access, CancelRules())
    assert isinstance(await decision(admit, HERE, UPLOAD_LOGS), Caller)
    refused = await decision(admit, HERE)  # anything but the upload: refused at once
    assert isinstance(refused, Refusal) and refused.error.code == ErrorCode.UNAUTHENTICATED
    in_tail[0] = False
    refused = await decision(admit, HERE, UPLOAD_LOGS)
    assert isinstance(refused, Refusal) and refused.error.code == ErrorCode.UNAUTHENTICATED
    # A replica that does not run the build: the store says the job ended, the tail
    # is still taken.
    in_tail[0] = True
    store = Store()
    store.live.clear()
    access = JobAccess(TOKENS, lambda scope: None, store.is_live, tail)
    elsewhere = JobAdmission(access, CancelRules())
    assert isinstance(await decision(elsewhere, ELSEWHERE, UPLOAD_LOGS), Caller)
    refused = await decision(elsewhere, ELSEWHERE)
    assert isinstance(refused, Refusal) and refused.error.code == ErrorCode.UNAUTHENTICATED


async def test_an_upload_open_at_its_jobs_end_is_not_cut_during_the_tail() -> None:
    interceptor = AuthInterceptor(None, CancelRules())
    interceptor.admit_jobs(JobAccess(TOKENS, lambda scope: False))
    upload = interceptor.open_calls.add(job_principal(HERE), None, grace_seconds=60.0)
    watch = interceptor.open_calls.add(job_principal(HERE), None)
    assert interceptor.end_finished_job_calls() == 1
    assert watch.ended.is_set() and not upload.ended.is_set()


async def test_a_stale_token_tried_again_and_again_costs_one_read_of_the_store() -> None:
    reads: list[JobScope] = []
    now = [1000.0]

    async def job_end(build_id: str, job_id: str) -> float | None:
        reads.append(JobScope(build_id, job_id))
        return 990.0  # ended 10 s before `now`

    in_tail = job_in_log_tail(job_end, lambda: now[0])
    assert await in_tail(HERE) and await in_tail(HERE)
    now[0] += LOG_TAIL_SECONDS
    assert not await in_tail(HERE)
    assert not await in_tail(HERE)
    assert reads == [HERE]
