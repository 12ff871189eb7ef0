"""The toolchain check's handler in Python, built by componentize-py.

`wit_world` and `componentize_py_types` are the bindings componentize-py
generates from the WIT at build time: this file runs only inside the
component.
"""

from urllib.parse import unquote

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports.streams import StreamError_Closed
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Get,
    Method_Post,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

# The most bytes one blocking_write_and_flush may be given (wasi:io's limit).
CHUNK = 4096


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        method = request.method()
        path = (request.path_with_query() or "/").split("?", 1)[0]
        if isinstance(method, Method_Post) and path == "/echo":
            echo(request, response_out)
        elif isinstance(method, Method_Get):
            name = unquote(path[1:])  # UTF-8; invalid sequences become U+FFFD
            text = f"Hello from Python, {name}!" if name else "Hello from Python!"
            headers = [("content-type", b"text/plain; charset=utf-8")]
            respond(response_out, 200, headers, text.encode())
        else:
            # No body, as in the other two guests (and a HEAD response must
            # not have one: the host closes its stream, so writing fails).
            respond(response_out, 405, [("allow", b"GET, POST")], b"")


def respond(response_out, status, headers, body: bytes) -> None:
    response = OutgoingResponse(Fields.from_list(headers))
    response.set_status_code(status)
    out_body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    # The stream is a child of the body: it must be dropped (the `with`)
    # before the body is finished.
    with out_body.write() as sink:
        for start in range(0, len(body), CHUNK):
            sink.blocking_write_and_flush(body[start : start + CHUNK])
    OutgoingBody.finish(out_body, None)


def echo(request: IncomingRequest, response_out: ResponseOutparam) -> None:
    """Streams the request body back a chunk at a time, so memory stays
    bounded whatever its size (the host caps that too)."""
    response = OutgoingResponse(Fields.from_list([]))
    out_body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    with request.consume() as in_body:
        with in_body.stream() as source, out_body.write() as sink:
            while True:
                try:
                    chunk = source.blocking_read(CHUNK)
                except Err as err:
                    if isinstance(err.value, StreamError_Closed):
                        break  # the whole body has been read
                    raise
                if chunk:
                    sink.blocking_write_and_flush(chunk)
    OutgoingBody.finish(out_body, None)
