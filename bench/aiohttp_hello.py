"""The original program's behaviour, for `make bench`: an aiohttp server
answering `GET /{name}` with `Hello, {name}!`.

Usage: python aiohttp_hello.py PORT
"""

import sys

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    name = request.match_info.get("name", "Anonymous")
    return web.Response(text=f"Hello, {name}!")


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.add_routes([web.get("/", handle), web.get("/{name}", handle)])
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
