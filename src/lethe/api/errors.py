"""Every API error is JSON with a stable code: `{"error": {"code", "message"}}`.

Clients branch on `code`; `message` is for people and may change. Messages never
carry request values (pydantic's validation errors echo the input, so only the field
location and the kind of problem are kept).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from lethe.errors import LetheError, NotFound, StoreError

CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
         415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
         500: "internal_error", 503: "store_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.headers = headers or {}


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def lethe_status(exc: LetheError) -> tuple[int, str]:
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, StoreError):
        return 503, "store_unavailable"
    return 422, "invalid_request"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('type', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def on_lethe_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, LetheError)
        status, code = lethe_status(exc)
        return error_response(status, code, str(exc))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_request", _validation_message(exc))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, message, dict(exc.headers or {}))

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the type only (its text could hold anything), and a 500 the client can
        # report; the audit entry for the call records the 500 too.
        return error_response(500, "internal_error",
                              f"internal error ({type(exc).__name__})")

    handlers: list[tuple[Any, Any]] = [
        (ApiError, on_api_error), (LetheError, on_lethe_error),
        (RequestValidationError, on_validation), (HTTPException, on_http),
        (Exception, on_crash)]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)
