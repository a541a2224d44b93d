"""A point-of-care terminal: the professional's card in its reader, the facility it works at, the fund's address."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

from labes.cards.tokens import CardToken
from labes.care import protocol
from labes.terminal.queue import OfflineQueue

API = "/api/v1/care"


class FundUnreachable(RuntimeError):
    """The fund could not be reached (network down, timeout, or the fund's service unavailable)."""


class Refused(RuntimeError):
    """The fund answered no: `problem` is its RFC 9457 problem+json body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status = status
        self.problem = problem

    @property
    def code(self) -> str:
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]


class _Client:
    """Talks to the fund: posts JSON, maps its answers to results, refusals and unreachability."""

    def __init__(self, base_url: str | None, client: httpx.Client | None, timeout: float) -> None:
        if client is None and base_url is None:
            raise ValueError("Give the fund's base URL or an HTTP client.")
        self.http = client or httpx.Client(base_url=base_url, timeout=timeout)

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = self.http.post(path, json=body)
        except httpx.TransportError as exc:
            raise FundUnreachable(f"The fund cannot be reached: {exc}") from exc
        if response.status_code >= 500:
            raise FundUnreachable(f"The fund's service is unavailable ({response.status_code}).")
        data = response.json() if response.content else {}
        if response.status_code >= 400:
            raise Refused(response.status_code, data)
        return data

    def challenge(self) -> str:
        """Fetch a one-time challenge."""
        return self._post(f"{API}/challenges")["challenge"]


class Insured(_Client):
    """The insured's side: their own card, read at home, at a fund kiosk or by a phone, with no professional."""

    def __init__(self, base_url: str | None = None, *, card: CardToken, client: httpx.Client | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(base_url, client, timeout)
        self.card = card

    def sign(self, action: str, content: dict[str, Any], *, challenge: str, now: datetime | None = None) -> dict[str, Any]:
        """Return the request body of one of the insured's own actions, signed by their card alone."""
        transaction = protocol.Transaction(
            action=action, professional_card=None, facility=None, time=(now or datetime.now(UTC)).replace(microsecond=0),
            content_digest=protocol.content_digest(content), patient_card=self.card.serial, challenge=challenge)
        return protocol.envelope(transaction, content, [self.card])

    def care_sheets(self, *, since: date | None = None) -> dict[str, Any]:
        """The care sheets the fund holds for the cardholder (their family's, for the insured member)."""
        content = {"since": since.isoformat()} if since else {}
        return self._post(f"{API}/insured/care-sheets", self.sign("insured-care-sheets", content, challenge=self.challenge()))


class Terminal(_Client):
    """Sign and send point-of-care transactions for one professional at one facility."""

    def __init__(self, base_url: str | None = None, *, facility: str, card: CardToken,
                 queue: OfflineQueue | Path | str | None = None, client: httpx.Client | None = None,
                 timeout: float = 10.0) -> None:
        super().__init__(base_url, client, timeout)
        self.facility = facility
        self.card = card
        self.queue = queue if isinstance(queue, OfflineQueue) or queue is None else OfflineQueue(queue)

    def sign(self, action: str, content: dict[str, Any], *, patient_card: CardToken | None = None,
             challenge: str | None = None, client_key: str | None = None, now: datetime | None = None) -> dict[str, Any]:
        """Return the request body of `action`: the transaction signed by the cards, and the content."""
        transaction = protocol.Transaction(
            action=action, professional_card=self.card.serial, facility=self.facility,
            time=(now or datetime.now(UTC)).replace(microsecond=0), content_digest=protocol.content_digest(content),
            patient_card=patient_card.serial if patient_card else None, challenge=challenge, client_key=client_key)
        cards = [patient_card, self.card] if patient_card else [self.card]
        return protocol.envelope(transaction, content, cards)

    def _signed(self, path: str, action: str, content: dict[str, Any], *, patient_card: CardToken | None) -> dict[str, Any]:
        body = self.sign(action, content, patient_card=patient_card, challenge=self.challenge(),
                         client_key=content.get("client_key"))
        return self._post(path, body)

    # ------------------------------------------------------------ actions

    def rights_check(self, patient_card: CardToken, *, act: str | None = None) -> dict[str, Any]:
        """Check the patient's rights and what they will pay here."""
        return self._signed(f"{API}/rights-checks", "rights-check", {"act": act} if act else {}, patient_card=patient_card)

    def send_care_sheet(self, patient_card: CardToken, content: dict[str, Any]) -> dict[str, Any]:
        """Send a care sheet; if the fund cannot be reached, queue it signed (needs a queue) and return the receipt.

        A `client_key` is added to `content` if it has none; keep it to find the sheet again.
        """
        content = {**content, "client_key": content.get("client_key") or uuid.uuid4().hex}
        try:
            return self._signed(f"{API}/care-sheets", "care-sheet", content, patient_card=patient_card)
        except FundUnreachable:
            if self.queue is None:
                raise
            body = self.sign("care-sheet", content, patient_card=patient_card, client_key=content["client_key"])
            self.queue.put(client_key=content["client_key"], path=f"{API}/care-sheets", body=body)
            return {"queued": True, "client_key": content["client_key"]}

    def flush(self) -> list[dict[str, Any]]:
        """Send every queued care sheet; return the fund's answers. A sheet leaves the queue only once the fund has it."""
        if self.queue is None:
            return []
        answers = []
        for item in self.queue.waiting():
            try:
                answers.append(self._post(item.path, item.body))
            except FundUnreachable as exc:
                self.queue.failed(item.client_key, str(exc), refused=False)
                break  # the link is down again: keep the order, try later
            except Refused as exc:
                # The fund will never accept this one as it is (e.g. past the deadline): keep it aside for the user.
                self.queue.failed(item.client_key, str(exc), refused=True)
                answers.append({"client_key": item.client_key, "refused": exc.problem})
                continue
            self.queue.sent(item.client_key)
        return answers

    def correct_care_sheet(self, number: str, patient_card: CardToken, content: dict[str, Any]) -> dict[str, Any]:
        """Resubmit a rejected care sheet, corrected, under its own number."""
        content = {**content, "client_key": content.get("client_key") or uuid.uuid4().hex}
        return self._signed(f"{API}/care-sheets/{number}/corrections", "care-sheet-correction", content,
                            patient_card=patient_card)

    def care_sheet_status(self, numbers: list[str] | None = None, *, since: str | None = None) -> list[dict[str, Any]]:
        """Read the statuses of this facility's care sheets."""
        content: dict[str, Any] = {"numbers": numbers or []}
        if since:
            content["since"] = since
        return self._signed(f"{API}/care-sheets/status", "care-sheet-status", content, patient_card=None)["items"]

    def prescribe(self, patient_card: CardToken, content: dict[str, Any]) -> dict[str, Any]:
        """Issue an e-prescription; the answer has its number, access code and QR code."""
        return self._signed(f"{API}/prescriptions", "prescribe", content, patient_card=patient_card)

    def open_prescription(self, number: str, *, patient_card: CardToken | None = None,
                          access_code: str | None = None) -> dict[str, Any]:
        """Open a prescription here with the patient's card or the access code from its QR code."""
        content: dict[str, Any] = {"prescription": number}
        if access_code:
            content["access_code"] = access_code
        return self._signed(f"{API}/prescriptions/open", "prescription-open", content, patient_card=patient_card)

    def cancel_prescription(self, number: str, reason: str) -> dict[str, Any]:
        return self._signed(f"{API}/prescriptions/cancel", "prescription-cancel",
                            {"prescription": number, "reason": reason}, patient_card=None)

    def dispense(self, number: str, lines: list[dict[str, Any]], *, patient_card: CardToken | None,
                 client_key: str | None = None, approval: str | None = None) -> dict[str, Any]:
        """Dispense lines of a prescription; the care sheet goes with it."""
        content: dict[str, Any] = {"client_key": client_key or uuid.uuid4().hex, "prescription": number, "lines": lines}
        if approval:
            content["approval"] = approval
        return self._signed(f"{API}/dispensations", "dispense", content, patient_card=patient_card)

    def request_approval(self, patient_card: CardToken, *, code: str, justification: str, quantity: int = 1,
                         diagnoses: list[str] | None = None) -> dict[str, Any]:
        return self._signed(f"{API}/approvals", "approval-request",
                            {"code": code, "quantity": quantity, "justification": justification,
                             "diagnoses": diagnoses or []}, patient_card=patient_card)
