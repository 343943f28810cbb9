"""The canonical repositories over git's smart HTTP protocol (dulwich's server), behind a token,
so executors on other machines clone, fetch and push without a shared disk.

A repository is addressed by its path on the serving host: `<base URL><repo_path>`, e.g.
`http://merger:9418/repos/app`. Only repositories under `root` are served; every request must
carry HTTP Basic credentials whose password is the token (any user name).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from dulwich.server import FileSystemBackend
from dulwich.web import make_wsgi_chain

log = logging.getLogger("yokeflow.gitserve")


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _deny(start_response, status: str, text: str, extra: list[tuple[str, str]] | None = None):
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body))), *(extra or [])])
    return [body]


def git_app(root: Path, token: str):
    """The WSGI app: dulwich's smart HTTP for repositories under `root`, for holders of `token`."""
    if len(token) < 16:
        raise ValueError("the git endpoint's token must have 16+ characters (YOKEFLOW_GIT_TOKEN)")
    root = root.resolve()
    git = make_wsgi_chain(FileSystemBackend("/"))
    expected = token.encode()

    def app(environ, start_response):
        header = environ.get("HTTP_AUTHORIZATION", "")
        offered = b""
        if header.startswith("Basic "):
            with contextlib.suppress(ValueError):
                offered = base64.b64decode(header[6:]).partition(b":")[2]
        if not hmac.compare_digest(offered, expected):
            return _deny(start_response, "401 Unauthorized", "git endpoint: missing or wrong token\n",
                         [("WWW-Authenticate", 'Basic realm="yokeflow"')])
        path = Path(environ.get("PATH_INFO", "/")).resolve()
        if path != root and root not in path.parents:
            return _deny(start_response, "404 Not Found", f"git endpoint: serves repositories under {root} only\n")
        return git(environ, start_response)

    return app


@contextlib.contextmanager
def serving(root: Path | str, token: str, *, host: str = "0.0.0.0", port: int = 0) -> Iterator[int]:
    """Serve until the block ends (in threads: dulwich's server is synchronous); yields the port."""
    server = make_server(host, port, git_app(Path(root), token), server_class=_ThreadingServer,
                         handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="git-http", daemon=True)
    thread.start()
    log.info("git smart HTTP for %s on %s:%s", root, host, server.server_port)
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
