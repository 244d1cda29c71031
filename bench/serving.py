"""How the benchmark's loopback servers run in a process of their own (stdlib only).

The harness starts each with ``python -m bench.<server>``, reads the port it prints, and stops it by closing its
standard input (or by exiting): a server never outlives the run that started it.
"""

from __future__ import annotations

import sys
import threading
from http.server import ThreadingHTTPServer


def serve_until_stdin_closes(server: ThreadingHTTPServer) -> None:
    """Print ``PORT <n>``, serve until the harness closes our stdin, then stop."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()
