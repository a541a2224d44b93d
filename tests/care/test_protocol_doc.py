"""docs/protocol.md's worked example says what the protocol does: its body, payload, headers and digest agree."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from labes.care import protocol

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    """The worked example's `body.json` and its decoded payload, as the page prints them."""
    text = DOC.read_text(encoding="utf-8")
    body = re.search(r"`body\.json`:\n```json\n(.*?)\n```", text, re.S)
    decoded = re.search(r"Decoded, the payload is .*?\n```json\n(.*?)\n```", text, re.S)
    assert body and decoded, "the worked example's body.json or decoded payload is missing from docs/protocol.md"
    return {"text": text, "body": body.group(1), "decoded": decoded.group(1)}


def test_the_payload_decodes_to_the_transaction_the_page_prints(example):
    body = json.loads(example["body"])

    assert protocol.b64url_decode(body["transaction"]["payload"]) == example["decoded"].encode()


def test_the_printed_transaction_is_canonical_and_reads_as_a_rights_check(example):
    body = json.loads(example["body"])

    signed = protocol.parse(body["transaction"])  # refuses a payload not in RFC 8785 form

    claims = json.loads(example["decoded"])
    assert protocol.canonical(claims) == example["decoded"].encode()
    assert signed.transaction.action == "rights-check" and claims["v"] == "labes-tx/1"
    assert signed.signers == (claims["patient_card"], claims["professional_card"])  # the kids the page names
    assert body["content"] == {}


def test_the_protected_headers_are_the_ones_the_page_names(example):
    body = json.loads(example["body"])
    claims = json.loads(example["decoded"])

    headers = [json.loads(protocol.b64url_decode(s["protected"])) for s in body["transaction"]["signatures"]]

    assert headers == [{"alg": "ES256", "kid": claims["patient_card"]}, {"alg": "ES256", "kid": claims["professional_card"]}]
    for header in headers:
        assert f"`{json.dumps(header, separators=(',', ':'))}`" in example["text"]


def test_each_signature_is_r_and_s_of_p256(example):
    body = json.loads(example["body"])

    assert [len(protocol.b64url_decode(s["signature"])) for s in body["transaction"]["signatures"]] == [64, 64]


def test_the_digest_of_the_empty_content_is_the_one_the_page_computes(example):
    claims = json.loads(example["decoded"])
    digest = hashlib.sha256(b"{}").hexdigest()

    assert claims["content_digest"] == protocol.content_digest({})
    assert f"`{digest[:8]}…{digest[-7:]}`" in example["text"]
    assert f"`{claims['content_digest'].removeprefix('sha256:')}`" in example["text"]


def test_the_challenge_in_the_transaction_is_the_one_fetched_in_step_one(example):
    claims = json.loads(example["decoded"])

    assert f'{{"challenge":"{claims["challenge"]}"' in example["text"]
    assert f"--challenge {claims['challenge']} > body.json" in example["text"]
