"""What happens to an accepted push: test phone numbers, scripts and seeded chaos.

A :class:`Plan` holds the outcome (ResultCode/ResultDesc and the success-body forms) and the
delivery behaviour (how many callbacks, when, with which bodies). Precedence, highest first:

* outcome: operator mismatch (SFC_IC0003, a property of the request) > script > test number
  > success;
* delivery: script > test number > chaos > one normal callback.

Chaos never touches scripted pushes or the delivery test numbers (254711000040-46): those are
explicit test set-ups and must behave the same on every run.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from .codes import (
    DS_TIMEOUT_DESC,
    NO_RESPONSE_DESC,
    OPERATOR_MISSING_CODE,
    RESULT_DESCRIPTIONS,
    SUCCESS_CODE,
)

BodyKind = Literal["normal", "empty", "malformed"]
BODY_KINDS: tuple[str, ...] = ("normal", "empty", "malformed")
AMOUNT_FORMS: tuple[str, ...] = ("int", "decimal")
BALANCE_FORMS: tuple[str, ...] = ("no_value", "absent", "zero")
PENDING_GENERATIONS: tuple[str, ...] = ("legacy", "modern")
MAX_DELIVERIES = 20
MAX_SCRIPT_COUNT = 1000


@dataclass
class Plan:
    """The fate of one push. ``None`` fields are filled in from config/seed at push time."""

    result_code: str = SUCCESS_CODE
    result_desc: str = RESULT_DESCRIPTIONS[SUCCESS_CODE]
    scenario: str = "success"
    source: str = "default"  # default | test-number | script
    deliver: bool = True
    deliveries: int = 1
    bodies: list[str] = field(default_factory=lambda: ["normal"])
    concurrent: bool = False
    late: bool = False
    delay: float | None = None
    customer_delay: float | None = None
    amount_form: str | None = None
    balance_form: str | None = None
    pending: str | None = None
    # Delivery is part of the scenario (duplicate/late/empty... test numbers): no chaos.
    fixed_delivery: bool = False
    # Synchronous "Unable to lock subscriber" for every push (test number 254711000099).
    reject_locked: bool = False
    chaos: dict[str, Any] | None = None

    def body_kind(self, attempt: int) -> str:
        """Body of the n-th delivery (0-based); a short list repeats its last entry."""
        return self.bodies[min(attempt, len(self.bodies) - 1)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PhoneScenario:
    phone: str
    name: str
    description: str
    plan: Plan

    def new_plan(self) -> Plan:
        return replace(self.plan, bodies=list(self.plan.bodies), source="test-number")


def _failure(code: str, desc: str | None = None) -> Plan:
    return Plan(result_code=code, result_desc=desc or RESULT_DESCRIPTIONS[code])


def _entry(nn: str, name: str, description: str, plan: Plan) -> PhoneScenario:
    plan = replace(plan, scenario=name)
    return PhoneScenario(phone=f"2547110000{nn}", name=name, description=description, plan=plan)


# The documented test-number table (docs/simulator.md). Any other number succeeds.
TEST_NUMBERS: dict[str, PhoneScenario] = {
    entry.phone: entry
    for entry in (
        _entry(
            "00",
            "success",
            "ResultCode 0; Amount as an integer, Balance item without Value",
            Plan(amount_form="int", balance_form="no_value"),
        ),
        _entry("01", "insufficient_funds", "ResultCode 1", _failure("1")),
        _entry(
            "03",
            "operator_not_exist",
            'ResultCode "SFC_IC0003" (a JSON string)',
            _failure(OPERATOR_MISSING_CODE),
        ),
        _entry(
            "10", "subscriber_lock_callback", "ResultCode 1001 in the callback", _failure("1001")
        ),
        _entry("17", "rule_limited", "ResultCode 17", _failure("17")),
        _entry("18", "no_security_credential", "ResultCode 2118", _failure("2118")),
        _entry("19", "expired", "ResultCode 1019", _failure("1019")),
        _entry("20", "wrong_pin", "ResultCode 2001 (wrong PIN)", _failure("2001")),
        _entry("25", "push_error", "ResultCode 1025", _failure("1025")),
        _entry("28", "not_permitted", "ResultCode 2028", _failure("2028")),
        _entry("32", "cancelled", "ResultCode 1032 (user cancelled)", _failure("1032")),
        _entry(
            "37",
            "timeout_no_response",
            'ResultCode 1037 "No response from user."',
            _failure("1037", NO_RESPONSE_DESC),
        ),
        _entry(
            "38",
            "unreachable",
            'ResultCode 1037 "DS timeout user cannot be reached."',
            _failure("1037", DS_TIMEOUT_DESC),
        ),
        _entry("86", "credential_locked", "ResultCode 8006 (PIN locked)", _failure("8006")),
        _entry(
            "99",
            "subscriber_locked",
            "every push is refused synchronously: HTTP 500 500.001.1001 Unable to lock subscriber",
            Plan(reject_locked=True),
        ),
        _entry(
            "40",
            "no_callback",
            "paid (ResultCode 0) but no callback is ever sent; STK Query reports the result",
            Plan(deliver=False, fixed_delivery=True),
        ),
        _entry(
            "41",
            "duplicate_callback",
            "paid; the identical callback is POSTed 3 times, duplicate_gap apart",
            Plan(deliveries=3, fixed_delivery=True),
        ),
        _entry(
            "42",
            "late_callback",
            "paid; the callback arrives late_delay after STK Query already reports the result",
            Plan(late=True, fixed_delivery=True),
        ),
        _entry(
            "43",
            "malformed_callback",
            "paid; the only callback is truncated, unparseable JSON",
            Plan(bodies=["malformed"], fixed_delivery=True),
        ),
        _entry(
            "44",
            "empty_callback",
            "paid; the only callback is an empty {} body",
            Plan(bodies=["empty"], fixed_delivery=True),
        ),
        _entry(
            "45",
            "empty_then_callback",
            "paid; an empty {} POST, then the real callback",
            Plan(bodies=["empty", "normal"], deliveries=2, fixed_delivery=True),
        ),
        _entry(
            "46",
            "concurrent_duplicate",
            "paid; the same callback POSTed twice at the same instant",
            Plan(deliveries=2, concurrent=True, fixed_delivery=True),
        ),
        _entry(
            "50",
            "success_decimal_amount",
            "paid; Amount written as 10.00 (raw JSON decimal)",
            Plan(amount_form="decimal"),
        ),
        _entry(
            "51",
            "success_no_balance",
            "paid; CallbackMetadata has no Balance item (4 items)",
            Plan(balance_form="absent"),
        ),
        _entry(
            "52",
            "success_balance_zero",
            'paid; Balance item with "Value": 0',
            Plan(balance_form="zero"),
        ),
    )
}


def plan_for_number(phone: str) -> Plan:
    entry = TEST_NUMBERS.get(phone)
    return entry.new_plan() if entry else Plan()


# --- scripts ---------------------------------------------------------------------------------

_SCRIPT_KEYS = {
    "phone",
    "result_code",
    "result_desc",
    "delay",
    "customer_delay",
    "deliveries",
    "deliver",
    "late",
    "body",
    "concurrent",
    "count",
    "amount_form",
    "balance_form",
    "pending",
}


class ScriptError(ValueError):
    """A control-API script that cannot be understood (answered with HTTP 400)."""


def parse_script(data: Mapping[str, Any]) -> tuple[str, int, Plan]:
    """Turn a ``POST /simulator/scripts`` body into (phone, count, plan).

    Unknown keys are refused so that a typo ("deliverys") does not silently run the default.
    """
    if not isinstance(data, Mapping):
        raise ScriptError("body must be a JSON object")
    unknown = set(data) - _SCRIPT_KEYS
    if unknown:
        raise ScriptError(f"unknown keys: {', '.join(sorted(unknown))}")

    phone = _script_phone(data.get("phone"))
    code = _script_code(data.get("result_code", SUCCESS_CODE))
    desc = data.get("result_desc")
    if desc is None:
        if code not in RESULT_DESCRIPTIONS:
            raise ScriptError(f"result_desc is required for result_code {code!r}")
        desc = RESULT_DESCRIPTIONS[code]
    if not isinstance(desc, str):
        raise ScriptError("result_desc must be a string")

    bodies = _script_bodies(data.get("body", "normal"))
    concurrent = _bool(data, "concurrent", False)
    default_deliveries = len(bodies) if isinstance(data.get("body"), list) else 1
    deliveries = _int(data, "deliveries", default_deliveries, 1, MAX_DELIVERIES)
    if concurrent and deliveries < 2:
        deliveries = 2  # "concurrent" only means something with at least two POSTs
    count = _int(data, "count", 1, 1, MAX_SCRIPT_COUNT)

    plan = Plan(
        result_code=code,
        result_desc=desc,
        scenario="scripted",
        source="script",
        deliver=_bool(data, "deliver", True),
        deliveries=deliveries,
        bodies=bodies,
        concurrent=concurrent,
        late=_bool(data, "late", False),
        delay=_seconds(data, "delay"),
        customer_delay=_seconds(data, "customer_delay"),
        amount_form=_choice(data, "amount_form", AMOUNT_FORMS),
        balance_form=_choice(data, "balance_form", BALANCE_FORMS),
        pending=_choice(data, "pending", PENDING_GENERATIONS),
        fixed_delivery=True,
    )
    return phone, count, plan


def _script_phone(value: Any) -> str:
    text = "" if isinstance(value, bool) else str(value).strip()
    if not isinstance(value, (str, int)):
        text = ""
    if text.startswith("+"):
        text = text[1:]
    if len(text) == 10 and text.startswith("0"):
        text = "254" + text[1:]
    if not (
        len(text) == 12 and text.isascii() and text.isdigit() and text.startswith(("2547", "2541"))
    ):
        raise ScriptError("phone must be an MSISDN like 254711000032")
    return text


def _script_code(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ScriptError("result_code must be a string or an integer")
    text = str(value).strip()
    if not text:
        raise ScriptError("result_code must not be empty")
    return text


def _script_bodies(value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or any(item not in BODY_KINDS for item in items):
        raise ScriptError(f"body must be one of {BODY_KINDS} or a list of them")
    return [str(item) for item in items]


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ScriptError(f"{key} must be true or false")
    return value


def _int(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScriptError(f"{key} must be an integer from {low} to {high}")
    return value


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ScriptError(f"{key} must be a non-negative number of seconds")
    return float(value)


def _choice(data: Mapping[str, Any], key: str, options: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is not None and value not in options:
        raise ScriptError(f"{key} must be one of {options}")
    return value


# --- chaos -----------------------------------------------------------------------------------

CHAOS_KINDS: tuple[str, ...] = ("duplicate", "delay", "no_delivery", "late", "empty", "concurrent")


def apply_chaos(plan: Plan, *, rate: float, seed: int, index: int, base_delay: float) -> None:
    """Maybe perturb the delivery of the ``index``-th push of a run, in place.

    The decision comes from a generator seeded with (seed, index) alone, so it does not depend
    on thread timing: the same seed and the same sequence of pushes give the same chaos.
    """
    if rate <= 0 or plan.fixed_delivery:
        return
    rng = random.Random(f"chaos:{seed}:{index}")
    if rng.random() >= rate:
        return
    kind = rng.choice(CHAOS_KINDS)
    record: dict[str, Any] = {"seed": seed, "rate": rate, "index": index, "kind": kind}
    if kind == "duplicate":
        plan.deliveries = rng.randint(2, 3)
        record["deliveries"] = plan.deliveries
    elif kind == "delay":
        # A slow customer: the answer and the callback both come later.
        factor = round(rng.uniform(2.0, 5.0), 2)
        plan.delay = base_delay * factor
        plan.customer_delay = base_delay * factor
        record["factor"] = factor
    elif kind == "no_delivery":
        plan.deliver = False
    elif kind == "late":
        plan.late = True
    elif kind == "empty":
        plan.bodies = ["empty", "normal"]
        plan.deliveries = 2
    else:  # concurrent
        plan.concurrent = True
        plan.deliveries = 2
    plan.chaos = record
