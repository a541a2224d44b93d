"""The terminal SDK: what a doctor's or pharmacist's terminal uses to talk to the fund.

    terminal = Terminal("https://labes.example/", facility="F0001", card=VirtualCard.load("doctor.card", pin="1234"))
    rights = terminal.rights_check(patient_card)
    sheet = terminal.send_care_sheet(patient_card, {"kind": "consultation", "care_date": "…", "lines": [...]})

Each action fetches a one-time challenge, has the cards sign the transaction (see docs/protocol.md) and
posts it. Care sheets survive a broken link: when the fund cannot be reached, the sheet is signed with
its client key instead of a challenge, kept in a local SQLite queue, and sent by `flush()` later — each
exactly once, because the fund answers a known client key with the sheet it already has.

    insured = Insured("https://labes.example/", card=VirtualCard.load("my.card"))
    insured.care_sheets()  # the family's care sheets, their statuses and payments, signed by the card alone
"""

from labes.terminal.client import FundUnreachable, Insured, Refused, Terminal
from labes.terminal.queue import OfflineQueue

__all__ = ["FundUnreachable", "Insured", "OfflineQueue", "Refused", "Terminal"]
