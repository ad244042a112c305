"""Housekeeping servicer (Purge): checks the request, runs the housekeeper's purge or
its dry run, converts the counts. No SQL here."""

from __future__ import annotations

from collections.abc import Callable

import grpc
from buildcontrol_proto.v1 import housekeeping_pb2, housekeeping_pb2_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from buildcontrol_server.domain.errors import InvalidArgument
from buildcontrol_server.domain.retention import PURGED_TABLES, Cutoffs
from buildcontrol_server.housekeeping.housekeeper import Housekeeper
from buildcontrol_server.rpc.errors import unary


class HousekeepingServicer(housekeeping_pb2_grpc.HousekeepingServicer):
    def __init__(self, housekeeper: Housekeeper, clock: Callable[[], float]) -> None:
        self._housekeeper = housekeeper
        self._clock = clock

    @unary
    async def Purge(
        self, request: housekeeping_pb2.PurgeRequest, context: grpc.aio.ServicerContext
    ) -> housekeeping_pb2.PurgeResponse:
        cutoffs = self._cutoffs(request)
        if request.dry_run:
            rows = await self._housekeeper.preview(cutoffs)
        else:
            rows = (await self._housekeeper.purge(cutoffs)).rows
        response = housekeeping_pb2.PurgeResponse(
            tables=[
                housekeeping_pb2.PurgedRows(table=table, rows=rows.get(table, 0))
                for table in PURGED_TABLES
            ],
            dry_run=request.dry_run,
        )
        if cutoffs.builds_before is not None:
            response.builds_before.CopyFrom(_timestamp(cutoffs.builds_before))
        return response

    def _cutoffs(self, request: housekeeping_pb2.PurgeRequest) -> Cutoffs:
        now = self._clock()
        if not request.HasField("before"):
            return self._housekeeper.policy.cutoffs(now)
        before = request.before.seconds + request.before.nanos / 1e9
        if request.before.nanos < 0 or request.before.nanos >= 1_000_000_000:
            raise InvalidArgument("before", "is not a valid timestamp (nanos out of range)")
        if before > now:
            # A typo of a year must not empty the database of every finished build.
            raise InvalidArgument("before", "is in the future; give a time up to now")
        return Cutoffs.everything_before(before)


def _timestamp(epoch_seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(epoch_seconds * 1e9))
    return stamp
