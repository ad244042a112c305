import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUILD_STATUS_UNSPECIFIED: _ClassVar[BuildStatus]
    BUILD_STATUS_QUEUED: _ClassVar[BuildStatus]
    BUILD_STATUS_RUNNING: _ClassVar[BuildStatus]
    BUILD_STATUS_SUCCEEDED: _ClassVar[BuildStatus]
    BUILD_STATUS_FAILED: _ClassVar[BuildStatus]
    BUILD_STATUS_CANCELING: _ClassVar[BuildStatus]
    BUILD_STATUS_CANCELED: _ClassVar[BuildStatus]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_PENDING: _ClassVar[JobStatus]
    JOB_STATUS_ASSIGNED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_STOPPING: _ClassVar[JobStatus]
    JOB_STATUS_CANCELED: _ClassVar[JobStatus]
    JOB_STATUS_SKIPPED: _ClassVar[JobStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_SUCCEEDED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_STOPPING: _ClassVar[StepStatus]
    STEP_STATUS_CANCELED: _ClassVar[StepStatus]
    STEP_STATUS_SKIPPED: _ClassVar[StepStatus]

class JobOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_OUTCOME_UNSPECIFIED: _ClassVar[JobOutcome]
    JOB_OUTCOME_GRACEFUL: _ClassVar[JobOutcome]
    JOB_OUTCOME_KILLED: _ClassVar[JobOutcome]
    JOB_OUTCOME_FORCED: _ClassVar[JobOutcome]
    JOB_OUTCOME_NEVER_STARTED: _ClassVar[JobOutcome]
    JOB_OUTCOME_LOST: _ClassVar[JobOutcome]
BUILD_STATUS_UNSPECIFIED: BuildStatus
BUILD_STATUS_QUEUED: BuildStatus
BUILD_STATUS_RUNNING: BuildStatus
BUILD_STATUS_SUCCEEDED: BuildStatus
BUILD_STATUS_FAILED: BuildStatus
BUILD_STATUS_CANCELING: BuildStatus
BUILD_STATUS_CANCELED: BuildStatus
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_PENDING: JobStatus
JOB_STATUS_ASSIGNED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_STOPPING: JobStatus
JOB_STATUS_CANCELED: JobStatus
JOB_STATUS_SKIPPED: JobStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_SUCCEEDED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_STOPPING: StepStatus
STEP_STATUS_CANCELED: StepStatus
STEP_STATUS_SKIPPED: StepStatus
JOB_OUTCOME_UNSPECIFIED: JobOutcome
JOB_OUTCOME_GRACEFUL: JobOutcome
JOB_OUTCOME_KILLED: JobOutcome
JOB_OUTCOME_FORCED: JobOutcome
JOB_OUTCOME_NEVER_STARTED: JobOutcome
JOB_OUTCOME_LOST: JobOutcome

class Step(_message.Message):
    __slots__ = ("index", "name", "command", "status", "exit_code", "run_on_cancel")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_CANCEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    name: str
    command: str
    status: StepStatus
    exit_code: int
    run_on_cancel: bool
    def __init__(self, index: _Optional[int] = ..., name: _Optional[str] = ..., command: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., exit_code: _Optional[int] = ..., run_on_cancel: _Optional[bool] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "name", "stage_index", "labels", "status", "outcome", "agent_id", "steps", "finished_at", "run_on_cancel")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_CANCEL_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    stage_index: int
    labels: _containers.ScalarMap[str, str]
    status: JobStatus
    outcome: JobOutcome
    agent_id: str
    steps: _containers.RepeatedCompositeFieldContainer[Step]
    finished_at: _timestamp_pb2.Timestamp
    run_on_cancel: bool
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., stage_index: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ..., status: _Optional[_Union[JobStatus, str]] = ..., outcome: _Optional[_Union[JobOutcome, str]] = ..., agent_id: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[Step, _Mapping]]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_on_cancel: _Optional[bool] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("name", "jobs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    name: str
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, name: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class CancelEscalation(_message.Message):
    __slots__ = ("requested_by", "reason", "requested_at", "force")
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    requested_by: str
    reason: str
    requested_at: _timestamp_pb2.Timestamp
    force: bool
    def __init__(self, requested_by: _Optional[str] = ..., reason: _Optional[str] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., force: _Optional[bool] = ...) -> None: ...

class CancelInfo(_message.Message):
    __slots__ = ("reason", "requested_by", "force", "grace_period_seconds", "requested_at", "escalations")
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    ESCALATIONS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    requested_by: str
    force: bool
    grace_period_seconds: float
    requested_at: _timestamp_pb2.Timestamp
    escalations: _containers.RepeatedCompositeFieldContainer[CancelEscalation]
    def __init__(self, reason: _Optional[str] = ..., requested_by: _Optional[str] = ..., force: _Optional[bool] = ..., grace_period_seconds: _Optional[float] = ..., requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., escalations: _Optional[_Iterable[_Union[CancelEscalation, _Mapping]]] = ...) -> None: ...

class Build(_message.Message):
    __slots__ = ("build_id", "pipeline", "status", "stages", "cancel", "created_at", "finished_at", "concurrency_group")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUP_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    pipeline: str
    status: BuildStatus
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    cancel: CancelInfo
    created_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    concurrency_group: str
    def __init__(self, build_id: _Optional[str] = ..., pipeline: _Optional[str] = ..., status: _Optional[_Union[BuildStatus, str]] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., cancel: _Optional[_Union[CancelInfo, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., concurrency_group: _Optional[str] = ...) -> None: ...
