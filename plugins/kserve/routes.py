"""The predictor's REST routes, placed ahead of KServe's on its FastAPI app, for BoostModels only.

- ``POST /v2/models/{name}/infer``: the body is decoded by :mod:`.v2rest` (NumPy; no Python
  object per element) instead of FastAPI + pydantic + ``InferRequest.from_bytes``; everything
  after the decode is KServe's own (``DataPlane.model_ready``, ``infer``, ``encode`` and
  ``V2Endpoints.infer``'s response, rendered to the same bytes), so the wire format does not
  change: binary outputs where the request asks for them, the same JSON otherwise.
- ``POST /v1/models/{name}:predict``: KServe's own handler, except that its ``InvalidInput``
  (a body that is not JSON, a bad CloudEvent) is answered as the client's error: 400 in KServe's
  envelope and one WARNING line, no traceback.

A route matches only a model that the DataPlane behind KServe's own routes holds as a
``BoostModel``; any other model (a plain ``kserve.Model`` in the same server) falls through to
KServe's route, unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import Request, Response
from fastapi.responses import ORJSONResponse
from fastapi.routing import APIRoute
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.rest.v1_endpoints import V1Endpoints
from kserve.protocol.rest.v2_datamodels import InferenceResponse
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from starlette.routing import Match

from yellowstone.errors import BadRequestError

from . import errors, v2rest

V2_INFER = "/v2/models/{model_name}/infer"
V1_PREDICT = "/v1/models/{model_name}:predict"
SCOPE_KEY = "yellowstone.kserve_endpoint"  # KServe's endpoint for the matched path, in the scope

_lock = threading.Lock()


class BoostRoute(APIRoute):
    """A route that matches only when the path's model is a BoostModel of KServe's DataPlane.

    Attributes:
        kserve_owner: the KServe endpoints class whose ``kserve_method`` serves this path.
        kserve_method: that method's name.
    """

    kserve_owner: type = V2Endpoints
    kserve_method: str = "infer"
    _found: tuple[tuple[int, int], Callable[..., Any]] | None = None  # (router, routes), endpoint

    def matches(self, scope: dict[str, Any]) -> tuple[Match, dict[str, Any]]:
        match, child = super().matches(scope)
        if match is Match.NONE:
            return match, child
        endpoint = self.kserve_endpoint(scope)
        name = child.get("path_params", {}).get("model_name")
        if endpoint is None or not _is_boost(endpoint.__self__.dataplane, name):
            return Match.NONE, {}
        child[SCOPE_KEY] = endpoint
        return match, child

    def kserve_endpoint(self, scope: dict[str, Any]) -> Callable[..., Any] | None:
        """KServe's own endpoint for this path on the app serving ``scope``, or None.

        None until ``RESTServer.create_application`` has registered KServe's routes.
        """
        router = scope.get("router") or getattr(scope.get("app"), "router", None)
        if router is None:
            return None
        key = (id(router), len(router.routes))  # KServe adds its routers once, at start
        if self._found is not None and self._found[0] == key:
            return self._found[1]
        endpoint = _find_endpoint(router.routes, self.kserve_owner, self.kserve_method)
        if endpoint is not None:
            self._found = (key, endpoint)
        return endpoint


class _V1Route(BoostRoute):
    kserve_owner = V1Endpoints
    kserve_method = "predict"


def _find_endpoint(routes: Iterable[Any], owner: type, method: str) -> Callable[..., Any] | None:
    """The bound ``owner.method`` among ``routes``, included routers too.

    FastAPI 0.165 keeps an included router whole (as ``original_router``); older versions copy
    its routes onto the app.
    """
    for route in routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(getattr(endpoint, "__self__", None), owner) and \
                getattr(endpoint, "__name__", "") == method:
            return endpoint
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        if nested is None and not isinstance(route, APIRoute):
            nested = getattr(route, "routes", None)
        if nested:
            found = _find_endpoint(nested, owner, method)
            if found is not None:
                return found
    return None


def _is_boost(dataplane: Any, name: str | None) -> bool:
    from .model import BoostModel

    return name is not None and isinstance(dataplane.model_registry.get_model(name), BoostModel)


async def v2_infer(raw_request: Request, raw_response: Response, model_name: str) -> Any:
    """``V2Endpoints.infer`` with the body decoded by :func:`v2rest.decode_request`."""
    dataplane = raw_request.scope[SCOPE_KEY].__self__.dataplane
    if not await dataplane.model_ready(model_name, True):
        raise ModelNotReady(model_name)
    headers = dict(raw_request.headers)
    body = await raw_request.body()
    try:
        infer_request = v2rest.decode_request(body, headers, model_name)
    except BadRequestError as exc:
        error = errors.to_kserve(exc)
        errors.log_error(model_name, error)
        raise error from exc
    response, response_headers = await dataplane.infer(
        model_name=model_name, request=infer_request, headers=headers)
    response, res_headers = dataplane.encode(model_name=model_name, response=response,
                                             headers=headers, req_attributes={})
    # From here on as V2Endpoints.infer answers.
    response_headers.update(res_headers)
    response_headers.pop("content-length", None)
    response_headers.pop("content-type", None)
    if response_headers:
        raw_response.headers.update(response_headers)
    if isinstance(response, bytes):
        raw_response.status_code = 200
        raw_response.body = response
        return raw_response
    # The bytes FastAPI renders for the InferenceResponse KServe returns (jsonable_encoder, then
    # the app's ORJSONResponse), without jsonable_encoder's walk over every output value.
    rendered = ORJSONResponse(InferenceResponse.model_validate(response).model_dump(
        mode="json", by_alias=True))
    rendered.headers.raw.extend(raw_response.headers.raw)
    return rendered


async def v1_predict(raw_request: Request, model_name: str) -> Any:
    """``V1Endpoints.predict``, with its ``InvalidInput`` answered as the client's error."""
    try:
        return await raw_request.scope[SCOPE_KEY](model_name, raw_request)
    except InvalidInput as exc:
        error = errors.to_kserve(BadRequestError(exc.reason))
        errors.log_error(model_name, error)
        raise error from exc


def install(app: Any = None) -> None:
    """Put the routes first on ``app`` (default: KServe's ``kserve.model_server.app``), once."""
    if app is None:
        from kserve import model_server

        app = model_server.app
    with _lock:
        routes = app.router.routes
        if any(isinstance(r, BoostRoute) for r in routes):
            return
        for path, endpoint, cls in ((V2_INFER, v2_infer, BoostRoute),
                                    (V1_PREDICT, v1_predict, _V1Route)):
            app.router.add_api_route(path, endpoint, methods=["POST"], response_model=None,
                                     include_in_schema=False, route_class_override=cls)
            route = routes.pop()
            routes.insert(0, route)  # ahead of KServe's, whenever they were registered
