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
