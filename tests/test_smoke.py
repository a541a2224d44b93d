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
