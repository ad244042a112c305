import datetime

from buildcontrol.v1 import build_pb2 as _build_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUILD_VIEW_UNSPECIFIED: _ClassVar[BuildView]
    BUILD_VIEW_BASIC: _ClassVar[BuildView]
    BUILD_VIEW_FULL: _ClassVar[BuildView]

class WebhookDeliveryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WEBHOOK_DELIVERY_STATE_UNSPECIFIED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_PENDING: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_DELIVERED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_REJECTED: _ClassVar[WebhookDeliveryState]
    WEBHOOK_DELIVERY_STATE_FAILED: _ClassVar[WebhookDeliveryState]
BUILD_VIEW_UNSPECIFIED: BuildView
BUILD_VIEW_BASIC: BuildView
BUILD_VIEW_FULL: BuildView
WEBHOOK_DELIVERY_STATE_UNSPECIFIED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_PENDING: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_DELIVERED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_REJECTED: WebhookDeliveryState
WEBHOOK_DELIVERY_STATE_FAILED: WebhookDeliveryState

class StepSpec(_message.Message):
    __slots__ = ("name", "command", "run_on_cancel")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_CANCEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: str
    run_on_cancel: bool
    def __init__(self, name: _Optional[str] = ..., command: _Optional[str] = ..., run_on_cancel: _Optional[bool] = ...) -> None: ...

class JobSpec(_message.Message):
    __slots__ = ("name", "labels", "env", "steps", "run_on_cancel", "timeout")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RUN_ON_CANCEL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    env: _containers.ScalarMap[str, str]
    steps: _containers.RepeatedCompositeFieldContainer[StepSpec]
    run_on_cancel: bool
    timeout: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., env: _Optional[_Mapping[str, str]] = ..., steps: _Optional[_Iterable[_Union[StepSpec, _Mapping]]] = ..., run_on_cancel: _Optional[bool] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class StageSpec(_message.Message):
    __slots__ = ("name", "jobs")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    name: str
    jobs: _containers.RepeatedCompositeFieldContainer[JobSpec]
    def __init__(self, name: _Optional[str] = ..., jobs: _Optional[_Iterable[_Union[JobSpec, _Mapping]]] = ...) -> None: ...

class SubmitBuildRequest(_message.Message):
    __slots__ = ("pipeline", "stages", "concurrency_group", "cancel_in_progress", "request_id", "view")
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUP_FIELD_NUMBER: _ClassVar[int]
    CANCEL_IN_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    pipeline: str
    stages: _containers.RepeatedCompositeFieldContainer[StageSpec]
    concurrency_group: str
    cancel_in_progress: bool
    request_id: str
    view: BuildView
    def __init__(self, pipeline: _Optional[str] = ..., stages: _Optional[_Iterable[_Union[StageSpec, _Mapping]]] = ..., concurrency_group: _Optional[str] = ..., cancel_in_progress: _Optional[bool] = ..., request_id: _Optional[str] = ..., view: _Optional[_Union[BuildView, str]] = ...) -> None: ...

class SubmitBuildResponse(_message.Message):
    __slots__ = ("build", "superseded_build_ids", "waiting_for_build_ids", "job_count", "step_count", "stages_omitted", "replayed")
    BUILD_FIELD_NUMBER: _ClassVar[int]
    SUPERSEDED_BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    JOB_COUNT_FIELD_NUMBER: _ClassVar[int]
    STEP_COUNT_FIELD_NUMBER: _ClassVar[int]
    STAGES_OMITTED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    build: _build_pb2.Build
    superseded_build_ids: _containers.RepeatedScalarFieldContainer[str]
    waiting_for_build_ids: _containers.RepeatedScalarFieldContainer[str]
    job_count: int
    step_count: int
    stages_omitted: bool
    replayed: bool
    def __init__(self, build: _Optional[_Union[_build_pb2.Build, _Mapping]] = ..., superseded_build_ids: _Optional[_Iterable[str]] = ..., waiting_for_build_ids: _Optional[_Iterable[str]] = ..., job_count: _Optional[int] = ..., step_count: _Optional[int] = ..., stages_omitted: _Optional[bool] = ..., replayed: _Optional[bool] = ...) -> None: ...

class GetBuildRequest(_message.Message):
    __slots__ = ("build_id",)
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    def __init__(self, build_id: _Optional[str] = ...) -> None: ...

class GetBuildResponse(_message.Message):
    __slots__ = ("build",)
    BUILD_FIELD_NUMBER: _ClassVar[int]
    build: _build_pb2.Build
    def __init__(self, build: _Optional[_Union[_build_pb2.Build, _Mapping]] = ...) -> None: ...

class ListBuildsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "pipeline")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    pipeline: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., pipeline: _Optional[str] = ...) -> None: ...

class ListBuildsResponse(_message.Message):
    __slots__ = ("builds", "next_page_token")
    BUILDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    builds: _containers.RepeatedCompositeFieldContainer[_build_pb2.Build]
    next_page_token: str
    def __init__(self, builds: _Optional[_Iterable[_Union[_build_pb2.Build, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchBuildRequest(_message.Message):
    __slots__ = ("build_id",)
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    def __init__(self, build_id: _Optional[str] = ...) -> None: ...

class BuildChanged(_message.Message):
    __slots__ = ("build_id", "status", "cancel")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    status: _build_pb2.BuildStatus
    cancel: _build_pb2.CancelInfo
    def __init__(self, build_id: _Optional[str] = ..., status: _Optional[_Union[_build_pb2.BuildStatus, str]] = ..., cancel: _Optional[_Union[_build_pb2.CancelInfo, _Mapping]] = ...) -> None: ...

class JobChanged(_message.Message):
    __slots__ = ("build_id", "job_id", "status", "outcome", "agent_id")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    status: _build_pb2.JobStatus
    outcome: _build_pb2.JobOutcome
    agent_id: str
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., status: _Optional[_Union[_build_pb2.JobStatus, str]] = ..., outcome: _Optional[_Union[_build_pb2.JobOutcome, str]] = ..., agent_id: _Optional[str] = ...) -> None: ...

class StepChanged(_message.Message):
    __slots__ = ("build_id", "job_id", "step_index", "status", "exit_code")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_INDEX_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    step_index: int
    status: _build_pb2.StepStatus
    exit_code: int
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., step_index: _Optional[int] = ..., status: _Optional[_Union[_build_pb2.StepStatus, str]] = ..., exit_code: _Optional[int] = ...) -> None: ...

class WatchBuildResponse(_message.Message):
    __slots__ = ("snapshot", "build_changed", "job_changed", "step_changed")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BUILD_CHANGED_FIELD_NUMBER: _ClassVar[int]
    JOB_CHANGED_FIELD_NUMBER: _ClassVar[int]
    STEP_CHANGED_FIELD_NUMBER: _ClassVar[int]
    snapshot: _build_pb2.Build
    build_changed: BuildChanged
    job_changed: JobChanged
    step_changed: StepChanged
    def __init__(self, snapshot: _Optional[_Union[_build_pb2.Build, _Mapping]] = ..., build_changed: _Optional[_Union[BuildChanged, _Mapping]] = ..., job_changed: _Optional[_Union[JobChanged, _Mapping]] = ..., step_changed: _Optional[_Union[StepChanged, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("build_id", "reason", "force", "grace_period", "requested_by")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    reason: str
    force: bool
    grace_period: _duration_pb2.Duration
    requested_by: str
    def __init__(self, build_id: _Optional[str] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., requested_by: _Optional[str] = ...) -> None: ...

class CancelAccepted(_message.Message):
    __slots__ = ("build_id", "status", "cancel", "jobs_stopping", "joined")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    JOBS_STOPPING_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    status: _build_pb2.BuildStatus
    cancel: _build_pb2.CancelInfo
    jobs_stopping: int
    joined: bool
    def __init__(self, build_id: _Optional[str] = ..., status: _Optional[_Union[_build_pb2.BuildStatus, str]] = ..., cancel: _Optional[_Union[_build_pb2.CancelInfo, _Mapping]] = ..., jobs_stopping: _Optional[int] = ..., joined: _Optional[bool] = ...) -> None: ...

class JobCancelResult(_message.Message):
    __slots__ = ("build_id", "job_id", "status", "outcome")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    job_id: str
    status: _build_pb2.JobStatus
    outcome: _build_pb2.JobOutcome
    def __init__(self, build_id: _Optional[str] = ..., job_id: _Optional[str] = ..., status: _Optional[_Union[_build_pb2.JobStatus, str]] = ..., outcome: _Optional[_Union[_build_pb2.JobOutcome, str]] = ...) -> None: ...

class CancelFinished(_message.Message):
    __slots__ = ("build_id", "status", "cancel", "jobs")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    status: _build_pb2.BuildStatus
    cancel: _build_pb2.CancelInfo
    jobs: _containers.RepeatedCompositeFieldContainer[JobCancelResult]
    def __init__(self, build_id: _Optional[str] = ..., status: _Optional[_Union[_build_pb2.BuildStatus, str]] = ..., cancel: _Optional[_Union[_build_pb2.CancelInfo, _Mapping]] = ..., jobs: _Optional[_Iterable[_Union[JobCancelResult, _Mapping]]] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("accepted", "job_stopped", "finished")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    JOB_STOPPED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    accepted: CancelAccepted
    job_stopped: JobCancelResult
    finished: CancelFinished
    def __init__(self, accepted: _Optional[_Union[CancelAccepted, _Mapping]] = ..., job_stopped: _Optional[_Union[JobCancelResult, _Mapping]] = ..., finished: _Optional[_Union[CancelFinished, _Mapping]] = ...) -> None: ...

class BuildIds(_message.Message):
    __slots__ = ("build_ids",)
    BUILD_IDS_FIELD_NUMBER: _ClassVar[int]
    build_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, build_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CancelBuildsRequest(_message.Message):
    __slots__ = ("ids", "pipeline", "concurrency_group", "reason", "force", "grace_period", "requested_by")
    IDS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    CONCURRENCY_GROUP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    ids: BuildIds
    pipeline: str
    concurrency_group: str
    reason: str
    force: bool
    grace_period: _duration_pb2.Duration
    requested_by: str
    def __init__(self, ids: _Optional[_Union[BuildIds, _Mapping]] = ..., pipeline: _Optional[str] = ..., concurrency_group: _Optional[str] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ..., grace_period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., requested_by: _Optional[str] = ...) -> None: ...

class CancelBuildsSummary(_message.Message):
    __slots__ = ("matched", "canceled", "already_canceling", "not_cancelable", "not_found")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    CANCELED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_CANCELING_FIELD_NUMBER: _ClassVar[int]
    NOT_CANCELABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    matched: int
    canceled: int
    already_canceling: int
    not_cancelable: int
    not_found: int
    def __init__(self, matched: _Optional[int] = ..., canceled: _Optional[int] = ..., already_canceling: _Optional[int] = ..., not_cancelable: _Optional[int] = ..., not_found: _Optional[int] = ...) -> None: ...

class CancelBuildsAccepted(_message.Message):
    __slots__ = ("matched", "committed", "already_canceling", "not_cancelable", "not_found")
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_CANCELING_FIELD_NUMBER: _ClassVar[int]
    NOT_CANCELABLE_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    matched: int
    committed: int
    already_canceling: int
    not_cancelable: int
    not_found: int
    def __init__(self, matched: _Optional[int] = ..., committed: _Optional[int] = ..., already_canceling: _Optional[int] = ..., not_cancelable: _Optional[int] = ..., not_found: _Optional[int] = ...) -> None: ...

class CancelBuildsResponse(_message.Message):
    __slots__ = ("build", "summary", "accepted")
    BUILD_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    build: CancelFinished
    summary: CancelBuildsSummary
    accepted: CancelBuildsAccepted
    def __init__(self, build: _Optional[_Union[CancelFinished, _Mapping]] = ..., summary: _Optional[_Union[CancelBuildsSummary, _Mapping]] = ..., accepted: _Optional[_Union[CancelBuildsAccepted, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Agent(_message.Message):
    __slots__ = ("agent_id", "labels", "capacity", "job_ids", "connected", "suspect", "version")
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
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SUSPECT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    labels: _containers.ScalarMap[str, str]
    capacity: int
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    connected: bool
    suspect: bool
    version: str
    def __init__(self, agent_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., capacity: _Optional[int] = ..., job_ids: _Optional[_Iterable[str]] = ..., connected: _Optional[bool] = ..., suspect: _Optional[bool] = ..., version: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ...) -> None: ...

class ListWebhookDeliveriesRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class WebhookDelivery(_message.Message):
    __slots__ = ("delivery_id", "event", "build_id", "created_at", "endpoint", "state", "attempts", "last_status", "last_error", "last_attempt_at")
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    event: str
    build_id: str
    created_at: _timestamp_pb2.Timestamp
    endpoint: str
    state: WebhookDeliveryState
    attempts: int
    last_status: int
    last_error: str
    last_attempt_at: _timestamp_pb2.Timestamp
    def __init__(self, delivery_id: _Optional[str] = ..., event: _Optional[str] = ..., build_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., endpoint: _Optional[str] = ..., state: _Optional[_Union[WebhookDeliveryState, str]] = ..., attempts: _Optional[int] = ..., last_status: _Optional[int] = ..., last_error: _Optional[str] = ..., last_attempt_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListWebhookDeliveriesResponse(_message.Message):
    __slots__ = ("deliveries",)
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    deliveries: _containers.RepeatedCompositeFieldContainer[WebhookDelivery]
    def __init__(self, deliveries: _Optional[_Iterable[_Union[WebhookDelivery, _Mapping]]] = ...) -> None: ...

class RedeliverWebhookRequest(_message.Message):
    __slots__ = ("delivery_id",)
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    delivery_id: str
    def __init__(self, delivery_id: _Optional[str] = ...) -> None: ...

class RedeliverWebhookResponse(_message.Message):
    __slots__ = ("endpoints",)
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, endpoints: _Optional[_Iterable[str]] = ...) -> None: ...
