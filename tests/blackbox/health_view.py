"""The whole /api/health document is shown to admins only (anonymous callers get status, version
and channel). Tests that read the checks start the server with this service token and send it."""
SERVICE_TOKEN = "health-view-service-token-0123456789abcdef"


def with_service_token(env):
    env["SCHEDULER_API_TOKEN"] = SERVICE_TOKEN
    return env


def full_health(server, **kw):
    return server.get("/api/health", headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}, **kw)
