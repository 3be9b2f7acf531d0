"""Nothing acknowledged is lost, even on kill -9 (SPEC §15)."""
import signal

import requests

from test_auth import ADMIN, bootstrap, me, post


def test_acknowledged_writes_survive_kill_9(server_factory, env):
    server = server_factory(env)
    admin = bootstrap(server).json()
    auth = {"Authorization": f"Bearer {admin['access_token']}"}
    created = requests.post(server.url + "/api/users", headers=auth, timeout=30,
                            json={"email": "kept@example.com", "password": "kept password 12"})
    assert created.status_code == 201
    pat = post(server, "/auth/tokens", json={"name": "kept"}, headers=auth).json()["token"]
    server.proc.send_signal(signal.SIGKILL)  # no checkpoint, no clean shutdown
    server.proc.wait(timeout=10)

    server = server_factory(env)
    assert me(server, admin["access_token"]).status_code == 200  # same secret, same user
    assert post(server, "/auth/token", json={"email": "kept@example.com",
                                             "password": "kept password 12"}).status_code == 200
    assert me(server, pat).json()["email"] == "admin@example.com"
    assert post(server, "/auth/bootstrap", json={"email": "x@example.com",
                                                 "password": ADMIN["password"]}).status_code == 403
