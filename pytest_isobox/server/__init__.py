"""`isobox serve`: Docker's Engine API served from an isobox engine (native by default).

Clients of the Docker API (the docker CLI, docker-py, testcontainers, compose) run their
containers on isobox unchanged. The server speaks only to the engine seam
(`pytest_isobox.engine`): listeners.py opens the sockets, http.py speaks HTTP/1.1 (hijacked
connections included), routing.py maps versioned paths to handlers, errors.py answers as
dockerd does, routes/ holds one module per endpoint group, command.py is the entry point.
"""
