"""TF Serving's REST API: its routes (:mod:`.routes`) over a bounded HTTP/1.1 transport (:mod:`.server`)."""

from __future__ import annotations

from .app import CORS_HEADERS, Route, make_app, make_server
from .framing import HttpError, Request
from .routes import OnRequest, RestApi
from .server import HttpServer, RestOptions

__all__ = [
    "CORS_HEADERS", "HttpError", "HttpServer", "OnRequest", "Request", "RestApi", "RestOptions", "Route",
    "make_app", "make_server",
]
