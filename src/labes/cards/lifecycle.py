"""The card's life as one state machine: pure data and one function, no I/O.

printed → batched → shipped → at_point → delivered → in_use; blocked from any live state;
returned (undelivered after the configured days) from at_point, and re-sent in a new batch;
a card issued on the spot at a fund centre or mobile centre is born delivered.
"""

from __future__ import annotations

from dataclasses import dataclass

STATES = ("printed", "batched", "shipped", "at_point", "delivered", "in_use", "returned", "blocked")
LIVE = ("printed", "batched", "shipped", "at_point", "delivered", "in_use", "returned")
BLOCK_REASONS = ("lost", "stolen", "damaged", "deceased", "rights_ended", "replaced")

# event → (states it may start from, the state it leads to)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "batch": (("printed", "returned"), "batched"),
    "ship": (("batched",), "shipped"),
    "receive": (("shipped",), "at_point"),
    "deliver": (("at_point",), "delivered"),
    "first_use": (("delivered",), "in_use"),
    "return_undelivered": (("at_point",), "returned"),
    "block": (LIVE, "blocked"),
}

STATE_LABELS = {
    "printed": "printed, not yet dispatched",
    "batched": "packed in a shipment",
    "shipped": "on its way to the pick-up point",
    "at_point": "waiting at the pick-up point",
    "delivered": "handed to its holder",
    "in_use": "in use",
    "returned": "returned undelivered",
    "blocked": "blocked",
}

# Only these states let a card sign a transaction.
CAN_AUTHENTICATE = ("delivered", "in_use")


class IllegalTransition(ValueError):
    """A move the card's life does not allow; the message says what is possible instead."""


@dataclass(frozen=True)
class Move:
    event: str
    from_state: str
    to_state: str


def next_state(state: str, event: str) -> Move:
    """Return the move `event` makes from `state`, or raise IllegalTransition explaining why not."""
    if event not in TRANSITIONS:
        raise IllegalTransition(f"Unknown card event {event!r}; events are {', '.join(TRANSITIONS)}.")
    sources, target = TRANSITIONS[event]
    if state not in sources:
        allowed = [e for e, (srcs, _) in TRANSITIONS.items() if state in srcs]
        hint = f"From '{STATE_LABELS.get(state, state)}' it can only be: {', '.join(allowed)}." if allowed else \
            "A blocked card stays blocked; issue a replacement."
        raise IllegalTransition(f"A card that is {STATE_LABELS.get(state, state)} cannot '{event.replace('_', ' ')}'. {hint}")
    return Move(event, state, target)
