"""Concurrency groups: the builds of a group run one at a time, in submission order.

The first live build of a group is its active one; the others wait QUEUED (their jobs
are not given to the scheduler) until the builds before them are terminal."""

from __future__ import annotations


class ConcurrencyGroups:
    def __init__(self) -> None:
        self._members: dict[str, list[str]] = {}  # group → live build ids, oldest first

    def join(self, group: str, build_id: str) -> bool:
        """Add a build; True if it may run now."""
        members = self._members.setdefault(group, [])
        members.append(build_id)
        return members[0] == build_id

    def older_than(self, group: str, build_id: str) -> list[str]:
        members = self._members.get(group, [])
        return members[: members.index(build_id)] if build_id in members else list(members)

    def leave(self, group: str, build_id: str) -> str | None:
        """Remove a build that ended; return the build whose turn it now is, if any
        (only when the one leaving was the active build)."""
        members = self._members.get(group)
        if not members or build_id not in members:
            return None
        was_active = members[0] == build_id
        members.remove(build_id)
        if not members:
            del self._members[group]
            return None
        return members[0] if was_active else None

    def members(self, group: str) -> list[str]:
        return list(self._members.get(group, []))
