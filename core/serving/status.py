"""Any exception raised while serving -> the HTTP status, gRPC code and message every server answers.

A ``YellowstoneError`` carries both statuses (see ``yellowstone.errors``); anything else is the
server's fault (500, ``INTERNAL``). Plugins wrap the result in their protocol's envelope only.
"""

from __future__ import annotations

import dataclasses

from ..errors import YellowstoneError


@dataclasses.dataclass(frozen=True, kw_only=True)
class Status:
    """What a server answers for one error."""

    http: int
    grpc_code: str
    message: str

    @property
    def client_fault(self) -> bool:
        """A 4xx: the request was wrong, so the server logs it briefly (no traceback)."""
        return 400 <= self.http < 500


def status_of(exc: BaseException) -> Status:
    """The status for ``exc``: its class's statuses, else 500 / INTERNAL."""
    if isinstance(exc, YellowstoneError):
        return Status(http=exc.http_status, grpc_code=exc.grpc_code, message=str(exc))
    return Status(http=500, grpc_code="INTERNAL", message=f"{type(exc).__name__}: {exc}")
