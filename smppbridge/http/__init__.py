"""A small HTTP/1.1 server on h11 for the HTTP side and the provider simulator."""

from smppbridge.http.server import (
    CloseConnection,
    Handler,
    HttpServer,
    Request,
    Response,
    Router,
)

__all__ = ["CloseConnection", "Handler", "HttpServer", "Request", "Response", "Router"]
