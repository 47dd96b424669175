"""The web service, tested from the host through its published port."""

from urllib.error import HTTPError
from urllib.request import urlopen

import pytest


def get(web, path):
    host, port = web.get_addr("8000/tcp")
    with urlopen(f"http://{host}:{port}{path}", timeout=5) as response:
        return response.status, response.read().decode()


def test_health(web):
    assert get(web, "/health") == (200, "ok\n")


def test_stores_and_reads_a_value(web):
    assert get(web, "/cgi-bin/kv?key=greeting&value=hello") == (200, "OK\n")
    assert get(web, "/cgi-bin/kv?key=greeting") == (200, "hello\n")


def test_unknown_key_is_404(web):
    with pytest.raises(HTTPError) as info:
        get(web, "/cgi-bin/kv?key=nothing-here")
    assert info.value.code == 404


def test_store_is_private_and_reached_by_name(web, kv):
    assert not kv.published_ports()
    code, output = web.exec(["sh", "-c", "echo 'SET direct yes' | nc kv 7000"])
    assert (code, output) == (0, "OK\n")
    assert get(web, "/cgi-bin/kv?key=direct") == (200, "yes\n")


def test_limits_hold(kv):
    stats = kv.stats()
    assert 0 < stats.memory_current <= 32 * 1024 * 1024
