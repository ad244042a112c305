import datetime

from buildcontrol.v1 import build_pb2 as _build_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunningJob(_message.Message):
    __slots__ = ("build_id", "job_id")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("agent_id", "labels", "capacity", "running_jobs", "finished_jobs", "stopped_jobs", "agent_version")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_JOBS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_JOBS_FIELD_NUMBER: _ClassVar[int]
    STOPPED_JOBS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    capacity: int
    running_jobs: _containers.RepeatedCompositeFieldContainer[RunningJob]
    finished_jobs: _containers.RepeatedCompositeFieldContainer[JobFinished]
    stopped_jobs: _containers.RepeatedCompositeFieldContainer[JobStopped]
    agent_version: str
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., running_jobs: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., finished_jobs: _Optional[_Iterable[_Union[JobFinished, _Mapping]]] = ..., stopped_jobs: _Optional[_Iterable[_Union[JobStopped, _Mapping]]] = ..., agent_version: _Optional[str] = ...) -> None: ...

class JobAccepted(_message.Message):
    __slots__ = ("build_id", "job_id")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class StepStarted(_message.Message):
    __slots__ = ("build_id", "job_id", "step_index")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    step_index: int
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., step_index: _Optional[int] = ...) -> None: ...

class StepFinished(_message.Message):
    __slots__ = ("build_id", "job_id", "step_index", "exit_code")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    step_index: int
    exit_code: int
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., step_index: _Optional[int] = ..., exit_code: _Optional[int] = ...) -> None: ...

class JobFinished(_message.Message):
    __slots__ = ("build_id", "job_id", "succeeded", "exit_code", "report_id")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    succeeded: bool
    exit_code: int
    report_id: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., succeeded: _Optional[bool] = ..., exit_code: _Optional[int] = ..., report_id: _Optional[str] = ...) -> None: ...

class JobStopped(_message.Message):
    __slots__ = ("build_id", "job_id", "outcome", "exit_code", "reason", "report_id")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    outcome: _build_pb2.JobOutcome
    exit_code: int
    reason: str
    report_id: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., outcome: _Optional[_Union[_build_pb2.JobOutcome, str]] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., report_id: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Goodbye(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "job_accepted", "step_started", "step_finished", "job_finished", "job_stopped", "heartbeat", "goodbye")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    JOB_ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    STEP_STARTED_FIELD_NUMBER: _ClassVar[int]
    STEP_FINISHED_FIELD_NUMBER: _ClassVar[int]
    JOB_FINISHED_FIELD_NUMBER: _ClassVar[int]
    JOB_STOPPED_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    GOODBYE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    job_accepted: JobAccepted
    step_started: StepStarted
    step_finished: StepFinished
    job_finished: JobFinished
    job_stopped: JobStopped
    heartbeat: Heartbeat
    goodbye: Goodbye
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., job_accepted: _Optional[_Union[JobAccepted, _Mapping]] = ..., step_started: _Optional[_Union[StepStarted, _Mapping]] = ..., step_finished: _Optional[_Union[StepFinished, _Mapping]] = ..., job_finished: _Optional[_Union[JobFinished, _Mapping]] = ..., job_stopped: _Optional[_Union[JobStopped, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., goodbye: _Optional[_Union[Goodbye, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "heartbeat_interval", "server_version")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    heartbeat_interval: _duration_pb2.Duration
    server_version: str
    def __init__(self, session_id: _Optional[str] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., server_version: _Optional[str] = ...) -> None: ...

class ReportsCommitted(_message.Message):
    __slots__ = ("report_ids",)
    REPORT_IDS_FIELD_NUMBER: _ClassVar[int]
    report_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, report_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AssignedStep(_message.Message):
    __slots__ = ("index", "name", "command", "run_on_cancel")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_CANCEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    command: str
    run_on_cancel: bool
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., command: _Optional[str] = ..., run_on_cancel: _Optional[bool] = ...) -> None: ...

class AssignJob(_message.Message):
    __slots__ = ("build_id", "job_id", "name", "steps", "env", "job_token")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    JOB_TOKEN_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    name: str
    steps: _containers.RepeatedCompositeFieldContainer[AssignedStep]
    env: _containers.ScalarMap[str, str]
    job_token: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., name: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[AssignedStep, _Mapping]]] = ..., env: _Optional[_Mapping[str, str]] = ..., job_token: _Optional[str] = ...) -> None: ...

class StopJob(_message.Message):
    __slots__ = ("build_id", "job_id", "reason", "grace_period", "deadline", "skip_cleanup", "cleanup_timeout")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    SKIP_CLEANUP_FIELD_NUMBER: _ClassVar[int]
    CLEANUP_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    reason: str
    grace_period: _duration_pb2.Duration
    deadline: _timestamp_pb2.Timestamp
    skip_cleanup: bool
    cleanup_timeout: _duration_pb2.Duration
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., reason: _Optional[str] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., skip_cleanup: _Optional[bool] = ..., cleanup_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "assign_job", "stop_job", "drain", "reports_committed")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    ASSIGN_JOB_FIELD_NUMBER: _ClassVar[int]
    STOP_JOB_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REPORTS_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    assign_job: AssignJob
    stop_job: StopJob
    drain: Drain
    reports_committed: ReportsCommitted
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., assign_job: _Optional[_Union[AssignJob, _Mapping]] = ..., stop_job: _Optional[_Union[StopJob, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., reports_committed: _Optional[_Union[ReportsCommitted, _Mapping]] = ...) -> None: ...
