"""Live progress of one build on a terminal: which jobs run, which are stopping, which
cleanup steps run, and how each job ended, redrawn in place as events arrive.

`BuildProgress` is the model: it folds WatchBuild and Cancel events into one picture of
the build and says, per job, what is happening in words (no terminal involved, so it is
tested directly). `LiveView` draws it with rich; it is used only when stdout is a
terminal. Piped output never comes here: it gets plain lines (cli_output.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from buildcontrol_proto.v1 import build_control_pb2, build_pb2
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from buildcontrol_client import cli_output


@dataclass
class StepView:
    index: int
    name: str = ""
    status: int = build_pb2.STEP_STATUS_PENDING
    exit_code: int | None = None
    run_on_cancel: bool = False


@dataclass
class JobView:
    job_id: str
    name: str = ""
    status: int = build_pb2.JOB_STATUS_PENDING
    outcome: int = build_pb2.JOB_OUTCOME_UNSPECIFIED
    agent_id: str = ""
    run_on_cancel: bool = False
    steps: list[StepView] = field(default_factory=list)

    def step(self, index: int) -> StepView:
        while len(self.steps) <= index:  # a step we learn of before any snapshot
            self.steps.append(StepView(index=len(self.steps)))
        return self.steps[index]


_CLEANUP_RAN = (build_pb2.STEP_STATUS_SUCCEEDED, build_pb2.STEP_STATUS_FAILED)


class BuildProgress:
    """What is known of a build, from a snapshot and the events that follow it."""

    def __init__(self, build_id: str) -> None:
        self.build_id = build_id
        self.pipeline = ""
        self.status = build_pb2.BUILD_STATUS_UNSPECIFIED
        self.cancel: build_pb2.CancelInfo | None = None
        self.jobs: dict[str, JobView] = {}

    @property
    def terminal(self) -> bool:
        return self.status in (
            build_pb2.BUILD_STATUS_SUCCEEDED,
            build_pb2.BUILD_STATUS_FAILED,
            build_pb2.BUILD_STATUS_CANCELED,
        )

    def apply_build(self, build: build_pb2.Build) -> None:
        self.pipeline = build.pipeline
        self.status = build.status
        if build.HasField("cancel"):
            self.cancel = build.cancel
        for stage in build.stages:
            for job in stage.jobs:
                self.jobs[job.job_id] = JobView(
                    job_id=job.job_id,
                    name=job.name,
                    status=job.status,
                    outcome=job.outcome,
                    agent_id=job.agent_id,
                    run_on_cancel=job.run_on_cancel,
                    steps=[
                        StepView(
                            index=step.index,
                            name=step.name or step.command,
                            status=step.status,
                            exit_code=step.exit_code if step.HasField("exit_code") else None,
                            run_on_cancel=step.run_on_cancel,
                        )
                        for step in job.steps
                    ],
                )

    def apply_watch(self, event: build_control_pb2.WatchBuildResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "snapshot":
            self.apply_build(event.snapshot)
        elif kind == "build_changed":
            self.status = event.build_changed.status
            if event.build_changed.HasField("cancel"):
                self.cancel = event.build_changed.cancel
        elif kind == "job_changed":
            changed = event.job_changed
            job = self._job(changed.job_id)
            job.status, job.outcome = changed.status, changed.outcome
            job.agent_id = changed.agent_id or job.agent_id
        elif kind == "step_changed":
            step_changed = event.step_changed
            step = self._job(step_changed.job_id).step(step_changed.step_index)
            step.status = step_changed.status
            if step_changed.HasField("exit_code"):
                step.exit_code = step_changed.exit_code

    def apply_cancel(self, event: build_control_pb2.CancelResponse) -> None:
        kind = event.WhichOneof("event")
        if kind == "accepted":
            self.status, self.cancel = event.accepted.status, event.accepted.cancel
        elif kind == "job_stopped":
            self._apply_result(event.job_stopped)
        elif kind == "finished":
            self.status, self.cancel = event.finished.status, event.finished.cancel
            for result in event.finished.jobs:
                self._apply_result(result)

    def _apply_result(self, result: build_control_pb2.JobCancelResult) -> None:
        job = self._job(result.job_id)
        job.status, job.outcome = result.status, result.outcome

    def _job(self, job_id: str) -> JobView:
        return self.jobs.setdefault(job_id, JobView(job_id=job_id))

    def headline(self) -> str:
        parts = [f"build {self.build_id}"]
        if self.pipeline:
            parts.append(cli_output.clean(self.pipeline))
        parts.append(cli_output.build_status(self.status))
        if self.cancel is not None:
            by = cli_output.clean(self.cancel.requested_by) or "?"
            forced = self.cancel.force or any(e.force for e in self.cancel.escalations)
            escalated = [cli_output.clean(e.requested_by) or "?" for e in self.cancel.escalations]
            extra = f", forced by {', '.join(escalated)}" if escalated else ""
            parts.append(f"(cancel by {by}{', forced' if forced and not extra else extra})")
        return " ".join(parts)

    def job_detail(self, job: JobView) -> str:
        """In words, what the job is doing now."""
        running = [s for s in job.steps if s.status == build_pb2.STEP_STATUS_RUNNING]
        stopping = [s for s in job.steps if s.status == build_pb2.STEP_STATUS_STOPPING]
        cleanup = [s for s in job.steps if s.run_on_cancel]
        if job.status == build_pb2.JOB_STATUS_STOPPING:
            cleaning = [s for s in running if s.run_on_cancel]
            if cleaning:
                return f"cleanup running: {_step_name(cleaning[0])}"
            if stopping:
                return f"stopping: {_step_name(stopping[0])} (SIGTERM, then SIGKILL)"
            return "stopping"
        if job.status in (build_pb2.JOB_STATUS_RUNNING, build_pb2.JOB_STATUS_ASSIGNED):
            where = f" on {cli_output.clean(job.agent_id)}" if job.agent_id else ""
            if self.status == build_pb2.BUILD_STATUS_CANCELING and job.run_on_cancel:
                return f"cleanup job running{where}"
            if running:
                step = running[0]
                return f"step {step.index + 1}/{len(job.steps)}: {_step_name(step)}{where}"
            return f"{cli_output.job_status(job.status).lower()}{where}"
        if job.status == build_pb2.JOB_STATUS_CANCELED:
            detail = f"outcome {cli_output.job_outcome(job.outcome)}"
            ran = [s for s in cleanup if s.status in _CLEANUP_RAN]
            if ran:
                failed = [s for s in ran if s.status == build_pb2.STEP_STATUS_FAILED]
                steps = "1 step" if len(ran) == 1 else f"{len(ran)} steps"
                detail += f", cleanup {'failed' if failed else 'ran'} ({steps})"
            return detail
        if job.status == build_pb2.JOB_STATUS_PENDING:
            return "cleanup job, waiting" if job.run_on_cancel else "waiting"
        failed = [s for s in job.steps if s.status == build_pb2.STEP_STATUS_FAILED]
        if failed and failed[0].exit_code is not None:
            return f"{_step_name(failed[0])} exited {failed[0].exit_code}"
        return ""

    def render(self) -> RenderableType:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("JOB")
        table.add_column("STATUS")
        table.add_column("DETAIL", overflow="fold")
        for job in self.jobs.values():
            # Text(...) and not markup: names come from the server and may hold "[...]".
            table.add_row(
                Text(cli_output.clean(job.name or job.job_id)),
                Text(cli_output.job_status(job.status), style=_STYLE.get(job.status, "")),
                Text(self.job_detail(job)),
            )
        return Group(Text(self.headline(), style="bold"), table)


_STYLE: dict[int, str] = {
    build_pb2.JOB_STATUS_SUCCEEDED: "green",
    build_pb2.JOB_STATUS_FAILED: "red",
    build_pb2.JOB_STATUS_STOPPING: "yellow",
    build_pb2.JOB_STATUS_CANCELED: "magenta",
}


def _step_name(step: StepView) -> str:
    return cli_output.clean(step.name) or f"step {step.index}"


class LiveView:
    """Redraws a BuildProgress in place; the last picture stays on the screen."""

    def __init__(self, progress: BuildProgress, console: Console | None = None) -> None:
        self.progress = progress
        self._live = Live(
            progress.render(),
            console=console or Console(),
            # Redrawn on each event; the low auto-refresh only keeps the picture whole
            # if the terminal is resized while no event arrives.
            refresh_per_second=4,
            transient=False,
        )

    def __enter__(self) -> LiveView:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.refresh()
        self._live.stop()

    def watch_event(self, event: build_control_pb2.WatchBuildResponse) -> None:
        self.progress.apply_watch(event)
        self.refresh()

    def cancel_event(self, event: build_control_pb2.CancelResponse) -> None:
        self.progress.apply_cancel(event)
        self.refresh()

    def refresh(self) -> None:
        self._live.update(self.progress.render(), refresh=True)
