"""One line for a start-up failure of ``tessera serve``: what failed and how to fix it."""

from __future__ import annotations

import errno
import sqlite3


def explain_listen_failure(error: OSError, host: str, port: int) -> str:
    """Why the server could not listen on ``host``:``port``, and what to do."""
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use (another Tessera or another "
            f"program); stop it, or choose another port: tessera serve --port {_other(port)} "
            "(or [server] port, TESSERA_SERVER_PORT)"
        )
    if error.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: permission denied (ports below 1024 need root); "
            "choose a port of 1024 or more: tessera serve --port 8080"
        )
    if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return (
            f"cannot listen on {where}: {host} is not an address of this machine; "
            "choose one that is: tessera serve --host 127.0.0.1 (or [server] host)"
        )
    if error.errno == errno.EMFILE:
        return f"cannot listen on {where}: too many open files; raise the limit (ulimit -n)"
    return f"cannot listen on {where}: {error.strerror or error}"


def explain_storage_failure(error: OSError | sqlite3.Error, data_dir: str) -> str:
    """Why the data directory or its database could not be opened, and what to do."""
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    where = f" ({error.filename})" if isinstance(error, OSError) and error.filename else ""
    return (
        f"cannot open the data directory {data_dir}: {detail}{where}; choose a writable "
        "directory with [storage] data_dir (or TESSERA_STORAGE_DATA_DIR)"
    )


def _other(port: int) -> int:
    return 8081 if port in (0, 8080) else port + 1
