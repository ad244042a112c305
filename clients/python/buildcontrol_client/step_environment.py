"""What a step's process gets from the agent: an allow-listed environment and,
optionally, a user of its own. Never the agent's own credentials.

A step sees:
- from the agent's environment only PATH, HOME, LANG, LC_*, TERM, TMPDIR, TZ, USER,
  LOGNAME and SHELL (with a step user: HOME, USER, LOGNAME and SHELL are that user's);
- the job's env (from the pipeline), which may override those;
- BUILDCONTROL_AGENT_ID, BUILDCONTROL_BUILD_ID, BUILDCONTROL_JOB_ID and
  BUILDCONTROL_STEP_INDEX, which the job's env cannot override (the agent finds a job's
  orphans by BUILDCONTROL_JOB_ID when it has no cgroups);
- BUILDCONTROL_JOB_TOKEN when the agent was handed a job-scoped token for the job.
Everything else the agent runs with (BUILDCONTROL_TOKEN, cloud credentials, ...) stays out.
"""

from __future__ import annotations

import pwd
from collections.abc import Mapping
from dataclasses import dataclass

ALLOWED_VARIABLES = frozenset(
    {"PATH", "HOME", "LANG", "TERM", "TMPDIR", "TZ", "USER", "LOGNAME", "SHELL"}
)
ALLOWED_PREFIXES = ("LC_",)
# Used when the agent itself runs without PATH (e.g. started by an init with a bare env).
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class StepUser:
    """A user steps run as (`--step-user`): the agent's token file, mode 0600 and owned
    by the agent's user, is then out of their reach."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str

    @classmethod
    def named(cls, name: str) -> StepUser:
        """The user `name` (or a numeric uid); KeyError if there is none."""
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
        return cls(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)

    def setpriv(self, argv: list[str]) -> list[str]:
        """`argv` run as this user, with no supplementary groups of the agent's."""
        return [
            "setpriv",
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--clear-groups",
            "--",
            *argv,
        ]


def step_environment(
    agent_env: Mapping[str, str],
    job_env: Mapping[str, str],
    *,
    agent_id: str,
    build_id: str,
    job_id: str,
    step_index: int,
    user: StepUser | None = None,
    job_token: str | None = None,
) -> dict[str, str]:
    """The environment of one step. `job_token` is the hook for a job-scoped token
    (AssignJob.job_token, when the server issues one): passed as BUILDCONTROL_JOB_TOKEN."""
    env = {
        name: value
        for name, value in agent_env.items()
        if name in ALLOWED_VARIABLES or name.startswith(ALLOWED_PREFIXES)
    }
    env.setdefault("PATH", DEFAULT_PATH)
    if user is not None:
        env.update(HOME=user.home, USER=user.name, LOGNAME=user.name, SHELL=user.shell)
    env.update(job_env)
    env.update(
        BUILDCONTROL_AGENT_ID=agent_id,
        BUILDCONTROL_BUILD_ID=build_id,
        BUILDCONTROL_JOB_ID=job_id,
        BUILDCONTROL_STEP_INDEX=str(step_index),
    )
    if job_token:
        env["BUILDCONTROL_JOB_TOKEN"] = job_token
    return env
