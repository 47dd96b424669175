"""The Docker Engine implementation of `pytest_isobox.engine.Engine`.

engine.py      DockerEngine: containers, the sweep of dead owners, attach (with images.py
               and networks.py mixed in)
images.py      builds, imports, archives, commits and tags
networks.py    networks and volumes
client.py      our HTTP client: unix/tcp sockets, JSON, streams, hijacked connections
streams.py     stdout/stderr frame demultiplexing
containers.py  ContainerSpec -> create body, inspect -> ContainerState
build.py       the context tar (.dockerignore applied here) and build progress -> BuildStep
attach.py      the local terminal wired to a container (raw mode, resize)
ownership.py   ownership labels and who counts as a dead owner
errors.py      Docker's HTTP errors -> our error types
"""
