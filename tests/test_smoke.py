import pytest

from tests import factories


def test_health(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    from labes.migrate import head_revision

    assert ready.json()["migration"] == head_revision()


def test_family(client, session):
    token = factories.agent_token(session, "registry_clerk")
    m = factories.member(session)
    factories.dependant(session, m.social_id)
    session.commit()
    r = client.get(f"/api/v1/families/{m.social_id}", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert len(r.json()["people"]) == 2


def test_one_access_log_line_per_request_with_the_route_template(client, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="labes.access"):
        response = client.get("/api/v1/cards/100000000017", headers={"x-request-id": "desk-kas-7"})

    [line] = [r for r in caplog.records if r.name == "labes.access"]
    assert line.fields == {**line.fields, "request_id": "desk-kas-7", "method": "GET",
                           "route": "/api/v1/cards/{serial}", "status": response.status_code}
    assert response.headers["x-request-id"] == "desk-kas-7" and line.fields["duration_ms"] >= 0


def test_a_served_process_freezes_its_start_up_heap(keys_dir, factory, monkeypatch):
    # A full collection walks every tracked object: frozen, what a process loads at start-up is no longer walked.
    import gc

    from starlette.testclient import TestClient

    from labes import app as app_module, cli
    from labes.config import Settings

    settings = Settings(database_url="sqlite://", environment="test", log_level="WARNING", keys_dir=keys_dir,
                        audit_seal_interval=0)
    gc.unfreeze()
    try:
        with TestClient(app_module.create_app(settings, factory)):
            assert gc.get_freeze_count() == 0  # the tests' apps, and create_app's default, leave the heap alone
        with TestClient(app_module.create_app(settings, factory, freeze_heap=True)) as served:
            assert gc.get_freeze_count() > 10_000
            assert served.get("/healthz").status_code == 200
    finally:
        gc.unfreeze()
    # and `labes serve` runs the freezing app in each worker
    ran = {}
    monkeypatch.setattr("uvicorn.run", lambda target, **options: ran.update(target=target, **options))
    cli.serve(host="127.0.0.1", port=8000, workers=2)
    assert ran["target"] == "labes.app:server_app" and ran["factory"] is True and ran["workers"] == 2
    monkeypatch.setattr(app_module, "create_app", lambda **options: options)
    assert app_module.server_app() == {"freeze_heap": True}


@pytest.mark.parametrize("telemetry", [False, True], ids=["off", "on"])
def test_requests_look_for_opentelemetry_only_when_telemetry_is_on(app_for, factory, monkeypatch, telemetry):
    # LABES_TELEMETRY: FastAPI's traces go to the OpenTelemetry SDK a deployment sets up; off, no request looks.
    from opentelemetry import trace
    from starlette.testclient import TestClient

    looked, real = [], trace.get_tracer_provider
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: looked.append(True) or real())
    with TestClient(app_for(factory, telemetry=telemetry)) as client:
        looked.clear()
        assert client.get("/healthz").json() == {"status": "ok"}
    assert bool(looked) is telemetry
