"""Property-based fuzzing of the STK callback parser (Hypothesis).

``parse_stk_callback`` must read every real shape or refuse with ``PayloadError`` naming the
problem, whatever arrives: arbitrary bytes, arbitrary JSON values of any type and nesting, and
real callbacks with their fields mutated (types swapped, keys dropped or added, items
reshaped, envelopes nested). What it returns must be usable: a success always has a positive
Decimal amount of at most two decimals and a receipt; a failure carries neither.

The bugs this file found (fixed in 9db0cfc "Parser hardening found by fuzzing") are pinned
as plain regression tests at the end.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.money import CENT
from daraja.parsing import (
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    NAIROBI,
    PayloadError,
    StkCallback,
    is_success_code,
    parse_stk_callback,
)
from testsupport import REPO_ROOT, stk_failure_body, stk_success_body

# FUZZ_MAX_EXAMPLES=5000 for a longer hunt; the default keeps the suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_MAX_EXAMPLES") or 300),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
CHECKOUT = "ws_CO_27112026103000123712345678"


# --- JSON text with exact control over numbers ---------------------------------------------


class RawNumber(str):
    """Numeric JSON text written as-is (``1.00``, ``1E+400``, 5000 digits, ``NaN``): lets the
    fuzz send numbers Python's ``json.dumps`` cannot produce."""


def dumps(value: Any) -> str:
    """JSON text for ``value``; RawNumber verbatim, Decimal as its exact text, floats by repr
    (``inf``/``nan`` come out as invalid JSON on purpose)."""
    if isinstance(value, RawNumber):
        return str(value)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10**4000 else "9" * 4500
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(dumps(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {dumps(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def loads(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal)


# --- Strategies -----------------------------------------------------------------------------

# Number-looking text, including forms money parsing must refuse or read exactly.
numeric_text = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,20})(\.[0-9]{1,6})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    st.sampled_from(
        [
            "0",
            "-0",
            "0.00",
            "0.001",
            "0.005",
            "1.00",
            "1.0",
            "10",
            "1.001",
            "100000000",
            "100000000.01",
            "1E+2",
            "1e-2",
            "1E+400",
            "1e-400",
            "99999999999999999999999999999999999",
        ]
    ),
)
huge_int_text = st.integers(min_value=20, max_value=4400).map(lambda n: RawNumber("9" * n))
special_number_text = st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(RawNumber)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, allow_infinity=False),
    numeric_text.map(RawNumber),
    huge_int_text,
    special_number_text,
    numeric_text,  # the same, as JSON strings ("10", " 1.00 ")
    st.text(max_size=40),
)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.text(max_size=12), children, max_size=5),
    ),
    max_leaves=15,
)

# Keys the parser looks for, so mutations hit real code paths more often than random text.
PARSER_KEYS = [
    "Body",
    "stkCallback",
    "MerchantRequestID",
    "CheckoutRequestID",
    "ResultCode",
    "ResultDesc",
    "CallbackMetadata",
    "Item",
    "Name",
    "Value",
]
ITEM_NAMES = ["Amount", "MpesaReceiptNumber", "Balance", "TransactionDate", "PhoneNumber"]
keys = st.one_of(st.sampled_from(PARSER_KEYS + ITEM_NAMES), st.text(max_size=12))

field_values = st.one_of(
    json_values,
    st.sampled_from([*ITEM_NAMES, "", " ", "0", "00", "SFC_IC0003", "1032", "ws_CO_1"]),
    st.sampled_from(["00010101000000", "20261127103045", "99991231235959", "20260230000000"]),
)


def base_callbacks(checkout: str = CHECKOUT, amount: str = "10") -> list[dict[str, Any]]:
    """Real-shaped callbacks to mutate: success (every observed form) and failures."""
    return [
        loads(stk_success_body(checkout_request_id=checkout, amount=amount)),
        loads(stk_success_body(checkout_request_id=checkout, amount="1.00", balance="zero")),
        loads(stk_success_body(checkout_request_id=checkout, amount='"10"', balance="absent")),
        loads(stk_success_body(checkout_request_id=checkout, amount=amount, envelope=False)),
        loads(stk_failure_body(checkout_request_id=checkout)),
        loads(stk_failure_body(checkout_request_id=checkout, result_code="SFC_IC0003")),
    ]


def _containers(node: Any, found: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (``node`` included), depth first."""
    if isinstance(node, (dict, list)):
        found.append(node)
        for child in node.values() if isinstance(node, dict) else node:
            _containers(child, found)
    return found


@st.composite
def mutate(draw: st.DrawFn, document: Any, rounds: int = 4) -> Any:
    """Apply 1..rounds structural mutations to a copy of ``document``."""
    doc = copy.deepcopy(document)
    for _ in range(draw(st.integers(min_value=1, max_value=rounds))):
        op = draw(
            st.sampled_from(
                ["set", "set", "set", "delete", "add", "wrap", "unwrap", "reshape", "duplicate"]
            )
        )
        targets = [c for c in _containers(doc, []) if c or op in ("add", "wrap")]
        if not targets:
            return doc
        target = draw(st.sampled_from(targets))
        if isinstance(target, dict):
            existing = list(target)
            if op == "set" and existing:
                target[draw(st.sampled_from(existing))] = draw(field_values)
            elif op == "delete" and existing:
                del target[draw(st.sampled_from(existing))]
            elif op == "add":
                target[draw(keys)] = draw(field_values)
            elif op == "wrap" and existing:
                key = draw(st.sampled_from(existing))
                target[key] = draw(st.sampled_from([[target[key]], {"Item": target[key]}]))
            elif op == "unwrap" and existing:
                key = draw(st.sampled_from(existing))
                value = target[key]
                if isinstance(value, dict) and value:
                    target[key] = next(iter(value.values()))
                elif isinstance(value, list) and value:
                    target[key] = value[0]
            elif op == "reshape" and existing:
                key = draw(st.sampled_from(existing))
                value = target[key]
                target[key] = draw(
                    st.sampled_from(
                        [
                            json.dumps(value, default=str),  # the object as a string
                            list(value.values()) if isinstance(value, dict) else value,
                            {str(i): v for i, v in enumerate(value)}
                            if isinstance(value, list)
                            else value,
                            None,
                        ]
                    )
                )
            elif op == "duplicate" and existing:
                key = draw(st.sampled_from(existing))
                target[key + draw(st.sampled_from(["", " ", "x"]))] = copy.deepcopy(target[key])
        else:  # a list: items
            if op == "set" and target:
                target[draw(st.integers(0, len(target) - 1))] = draw(field_values)
            elif op == "delete" and target:
                del target[draw(st.integers(0, len(target) - 1))]
            elif op in ("add", "wrap"):
                target.append(draw(field_values))
            elif op == "duplicate" and target:
                target.append(copy.deepcopy(draw(st.sampled_from(target))))
            elif op == "reshape" and target:
                target.reverse()
    if draw(st.integers(0, 9)) == 0:  # deep nesting around the whole document
        depth = draw(st.integers(1, 60))
        for _ in range(depth):
            doc = draw(st.sampled_from([{"Body": doc}, {"stkCallback": doc}, [doc]]))
    return doc


mutated_callbacks = st.sampled_from(base_callbacks()).flatmap(mutate)

bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: dumps(v).encode()),
    mutated_callbacks.map(lambda v: dumps(v).encode()),
    # Valid JSON cut short, padded, or re-encoded.
    mutated_callbacks.map(lambda v: dumps(v).encode()).flatmap(
        lambda b: st.integers(0, len(b)).map(lambda n: b[:n])
    ),
    mutated_callbacks.map(lambda v: dumps(v).encode("utf-16")),
    mutated_callbacks.map(lambda v: b"\xef\xbb\xbf" + dumps(v).encode()),
)


def parse(body: Any) -> StkCallback | None:
    """parse_stk_callback: the result, or None for a PayloadError (which must say why).
    Any other exception fails the test."""
    try:
        return parse_stk_callback(body)
    except PayloadError as exc:
        assert str(exc), "PayloadError without a message"
        return None


def check_result(parsed: StkCallback) -> None:
    """What every returned callback must satisfy."""
    assert isinstance(parsed, StkCallback)
    assert isinstance(parsed.checkout_request_id, str) and parsed.checkout_request_id
    assert len(parsed.checkout_request_id) <= MAX_ID_LENGTH
    assert isinstance(parsed.merchant_request_id, str)
    assert len(parsed.merchant_request_id) <= MAX_ID_LENGTH
    assert isinstance(parsed.result_code, str) and parsed.result_code
    assert isinstance(parsed.result_desc, str) and len(parsed.result_desc) <= 500
    assert all(isinstance(w, str) for w in parsed.warnings)
    json.dumps(parsed.evidence())  # stored in JSON fields: must serialise
    if not parsed.is_success:
        assert parsed.amount is None and parsed.receipt_number is None
        return
    amount = parsed.amount
    assert isinstance(amount, Decimal) and not isinstance(amount, float)
    assert amount.is_finite()
    assert amount > 0, f"success with amount {amount!r}"
    assert amount <= MAX_AMOUNT
    assert amount == amount.quantize(CENT), f"amount {amount!r} has more than two decimals"
    receipt = parsed.receipt_number
    assert isinstance(receipt, str) and receipt.strip() == receipt and receipt
    assert len(receipt) <= 32
    if parsed.transaction_date is not None:
        assert parsed.transaction_date.utcoffset() is not None
        assert parsed.transaction_date.tzinfo == UTC
    if parsed.phone_number is not None:
        assert isinstance(parsed.phone_number, str) and len(parsed.phone_number) <= 64
    if parsed.balance is not None:
        assert isinstance(parsed.balance, Decimal) and parsed.balance.is_finite()


# --- Properties -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2000))
@example(b"")
@example(b"\x00")
@example(b"\xff\xfe{}")
@example(b"[" * 50_000)
@example(b'{"a":' * 50_000)
def test_arbitrary_bytes_parse_or_raise_payload_error(body):
    parsed = parse(body)
    if parsed is not None:
        check_result(parsed)


@FUZZ
@given(json_values)
def test_arbitrary_json_values_parse_or_raise_payload_error(value):
    for body in (dumps(value).encode(), dumps(value)):
        parsed = parse(body)
        if parsed is not None:
            check_result(parsed)


@FUZZ
@given(st.dictionaries(keys, json_values, max_size=4))
def test_arbitrary_dicts_passed_directly(value):
    """The parser also takes an already-decoded dict (floats and all)."""
    parsed = parse(value)
    if parsed is not None:
        check_result(parsed)


@FUZZ
@given(mutated_callbacks, st.booleans())
@example({"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0}}}, True)
@example({"CheckoutRequestID": "x", "ResultCode": RawNumber("-0")}, True)
@example({"CheckoutRequestID": "x", "ResultCode": RawNumber("1E-400")}, True)
@example({"CheckoutRequestID": " ", "ResultCode": 1}, True)
@example({"CheckoutRequestID": 12345, "ResultCode": "  0 "}, False)
def test_mutated_callbacks_parse_or_raise_payload_error(document, as_bytes):
    parsed = parse(dumps(document).encode() if as_bytes else document)
    if parsed is not None:
        check_result(parsed)


@FUZZ
@given(bodies)
def test_every_body_shape_parses_or_raises_payload_error(body):
    parsed = parse(body)
    if parsed is not None:
        check_result(parsed)


# Mutations aimed at the money: Amount given every type and text.
amount_values = st.one_of(
    json_values,
    numeric_text,
    numeric_text.map(RawNumber),
    numeric_text.map(lambda t: f" {t} "),
    st.sampled_from(["", " ", "0", "0.00", "-1", "1,000", "KES 10", "10 KES", "0x10", "1/2"]),
)


@FUZZ
@given(amount_values, st.sampled_from(["value", "no_value", "item_as_dict", "twice"]))
@example(RawNumber("0.00"), "value")
@example(RawNumber("1.001"), "value")
@example(RawNumber("1E+400"), "value")
@example(RawNumber("100000000.01"), "value")
@example("NaN", "value")
@example(0.1, "value")
def test_a_success_amount_is_positive_exact_and_never_float_or_zero(raw, shape):
    document = loads(stk_success_body(checkout_request_id=CHECKOUT))
    items = document["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    amount_item = next(item for item in items if item["Name"] == "Amount")
    if shape == "value":
        amount_item["Value"] = raw
    elif shape == "no_value":
        del amount_item["Value"]
    elif shape == "item_as_dict":
        document["Body"]["stkCallback"]["CallbackMetadata"]["Item"] = {
            "Name": "Amount",
            "Value": raw,
        }
    else:
        items.append({"Name": "Amount", "Value": raw})
    for body, as_bytes in ((document, False), (dumps(document).encode(), True)):
        parsed = parse(body)
        if parsed is None:
            continue
        check_result(parsed)
        assert parsed.amount is not None and parsed.amount != 0
        assert not isinstance(parsed.amount, float)
        if shape == "no_value" or shape == "twice":
            pytest.fail(f"a success without a single readable Amount was accepted: {parsed}")
        if isinstance(raw, (int, Decimal)) and not isinstance(raw, bool):
            assert parsed.amount == Decimal(raw), "the amount was not read exactly"
        if isinstance(raw, float) and not as_bytes:  # as JSON text, 0.1 is just a number
            pytest.fail(f"a float amount {raw!r} was accepted as {parsed.amount!r}")


# Field-type confusion on each top-level field of a real success and failure.
type_confusions = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.decimals(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


@FUZZ
@given(
    st.sampled_from(base_callbacks()),
    st.sampled_from(
        ["ResultCode", "ResultDesc", "CheckoutRequestID", "MerchantRequestID", "CallbackMetadata"]
    ),
    type_confusions,
    st.booleans(),
)
def test_each_field_with_the_wrong_type(document, field, value, as_bytes):
    document = copy.deepcopy(document)
    inner = document["Body"]["stkCallback"] if "Body" in document else document
    inner[field] = value
    parsed = parse(dumps(document).encode() if as_bytes else document)
    if parsed is None:
        return
    check_result(parsed)
    wrong_type = value is None or isinstance(value, (bool, list, dict))
    if field == "ResultCode" and (wrong_type or (isinstance(value, float) and not as_bytes)):
        pytest.fail(f"ResultCode {value!r} was accepted as {parsed.result_code!r}")


# --- Round trip of valid callbacks ----------------------------------------------------------

ids = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-",
    min_size=1,
    max_size=MAX_ID_LENGTH,
)
valid_amounts = st.decimals(min_value=Decimal("0.01"), max_value=MAX_AMOUNT, places=2)
receipts = st.from_regex(r"[A-Z0-9]{10}", fullmatch=True)
local_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)).map(
    lambda moment: moment.replace(microsecond=0)
)
failure_codes = st.one_of(
    st.integers(min_value=1, max_value=99_999).map(str),
    st.sampled_from(["1032", "1037", "2001", "1", "SFC_IC0003", "4999", "1019"]),
)


def amount_forms(amount: Decimal) -> st.SearchStrategy[str]:
    """How Daraja may write this amount: 10, 10.00, 10.5, "10"."""
    forms = [f"{amount:.2f}", f'"{amount:.2f}"']
    if amount == amount.to_integral_value():
        forms += [str(int(amount)), f'"{int(amount)}"', f"{int(amount)}.0"]
    return st.sampled_from(forms)


def serialise(parsed: StkCallback) -> bytes:
    """A real-shaped callback carrying what ``parsed`` says."""
    inner: dict[str, Any] = {
        "MerchantRequestID": parsed.merchant_request_id,
        "CheckoutRequestID": parsed.checkout_request_id,
        "ResultCode": int(parsed.result_code)
        if parsed.result_code.isdigit()
        else parsed.result_code,
        "ResultDesc": parsed.result_desc,
    }
    if parsed.is_success:
        items: list[dict[str, Any]] = [
            {"Name": "Amount", "Value": parsed.amount},
            {"Name": "MpesaReceiptNumber", "Value": parsed.receipt_number},
        ]
        if parsed.transaction_date is not None:
            local = parsed.transaction_date.astimezone(NAIROBI)
            items.append({"Name": "TransactionDate", "Value": int(local.strftime("%Y%m%d%H%M%S"))})
        if parsed.phone_number is not None:
            items.append({"Name": "PhoneNumber", "Value": parsed.phone_number})
        if parsed.balance is not None:
            items.append({"Name": "Balance", "Value": parsed.balance})
        inner["CallbackMetadata"] = {"Item": items}
    return dumps({"Body": {"stkCallback": inner}}).encode()


@FUZZ
@given(
    checkout=ids,
    merchant=ids,
    amount=valid_amounts.flatmap(lambda a: st.tuples(st.just(a), amount_forms(a))),
    receipt=receipts,
    when=local_times,
    date_as_int=st.booleans(),
    phone=st.one_of(st.integers(254700000000, 254799999999), st.just("254708***430")),
    balance=st.sampled_from(["no_value", "zero", "absent"]),
    envelope=st.booleans(),
)
def test_valid_success_callbacks_round_trip(
    checkout, merchant, amount, receipt, when, date_as_int, phone, balance, envelope
):
    value, written = amount
    stamp = when.strftime("%Y%m%d%H%M%S")
    body = stk_success_body(
        checkout_request_id=checkout,
        merchant_request_id=merchant,
        amount=written,
        receipt=receipt,
        transaction_date=int(stamp) if date_as_int else stamp,
        phone=phone,
        balance=balance,
        envelope=envelope,
    )
    parsed = parse_stk_callback(body)
    check_result(parsed)
    assert parsed.is_success and parsed.result_code == "0"
    assert (parsed.checkout_request_id, parsed.merchant_request_id) == (checkout, merchant)
    assert parsed.amount == value
    assert parsed.receipt_number == receipt
    assert parsed.transaction_date == when.replace(tzinfo=NAIROBI).astimezone(UTC)
    assert parsed.phone_number == str(phone)
    assert parsed.balance == (Decimal(0) if balance == "zero" else None)
    assert parsed.warnings == ()
    again = parse_stk_callback(serialise(parsed))
    assert again == parsed
    assert parse_stk_callback(json.loads(body, parse_float=Decimal)) == parsed


@FUZZ
@given(
    checkout=ids,
    merchant=ids,
    code=failure_codes,
    desc=st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=600
    ),
    code_as_int=st.booleans(),
)
def test_valid_failure_callbacks_round_trip(checkout, merchant, code, desc, code_as_int):
    written: int | str = int(code) if code_as_int and code.isdigit() else code
    body = stk_failure_body(
        checkout_request_id=checkout,
        merchant_request_id=merchant,
        result_code=written,
        result_desc=desc,
    )
    parsed = parse_stk_callback(body)
    check_result(parsed)
    assert not parsed.is_success and not is_success_code(parsed.result_code)
    assert parsed.result_code == str(written).strip()
    assert parsed.result_desc == desc[:500]
    assert (parsed.checkout_request_id, parsed.merchant_request_id) == (checkout, merchant)
    assert parse_stk_callback(serialise(parsed)) == parsed


# --- Regressions: bugs this file found (fixed in 9db0cfc) -----------------------------------


@pytest.mark.parametrize(
    "stamp", ["00010101000000", "00010101025959", "19991231235959", "21010101000000"]
)
def test_an_implausible_transaction_date_is_a_warning_not_a_crash(stamp):
    """Was: year 1 raised OverflowError converting East Africa Time to UTC."""
    parsed = parse_stk_callback(
        stk_success_body(checkout_request_id=CHECKOUT, transaction_date=stamp)
    )
    assert parsed.is_success and parsed.transaction_date is None
    assert any("TransactionDate" in warning for warning in parsed.warnings)


@pytest.mark.parametrize("code", ["1E+4400", "1E+100000", "-1E+4400", "1E+12", "1234567890123.0"])
def test_a_result_code_with_a_huge_exponent_is_a_payload_error(code):
    """Was: ValueError ('Exceeds the limit (4300 digits) for integer string conversion')."""
    body = b'{"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": %s}}}' % (
        code.encode()
    )
    with pytest.raises(PayloadError, match="ResultCode"):
        parse_stk_callback(body)


def test_a_result_code_with_a_vast_exponent_is_refused_quickly():
    """Was a denial of service: the 60-byte body below cost ~20 s of CPU (a million-digit
    int), and bigger exponents never finished. Run apart, so a regression cannot hang the
    suite."""
    script = (
        "from daraja.parsing import PayloadError, parse_stk_callback\n"
        "try:\n"
        '    parse_stk_callback(b\'{"CheckoutRequestID": "x", "ResultCode": 1E+999999999}\')\n'
        "except PayloadError:\n"
        "    print('payload-error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, timeout=20, check=False
    )
    assert done.stdout.strip() == b"payload-error", done.stderr.decode()[-2000:]


@pytest.mark.parametrize(
    "raw",
    ['"1_0"', '"\\u0661\\u0660"', '"\\uff11\\uff10"', '"1e1"', '"NaN"', '"0x10"', '"10."', '".5"'],
)
def test_amount_text_that_is_not_a_plain_number_is_refused(raw):
    """Was: Decimal() read "1_0", Arabic-Indic and full-width digits as 10."""
    with pytest.raises(PayloadError, match="Amount"):
        parse_stk_callback(stk_success_body(checkout_request_id=CHECKOUT, amount=raw))


@pytest.mark.parametrize("blank", [" ", "\t", "  \n "])
@pytest.mark.parametrize("kind", ["failure", "success"])
def test_a_blank_checkout_request_id_is_missing(blank, kind):
    """Was: accepted and returned as '' (emptiness was checked before strip())."""
    if kind == "failure":
        raw = stk_failure_body(checkout_request_id=blank)
    else:
        raw = stk_success_body(checkout_request_id=blank)
    with pytest.raises(PayloadError, match="CheckoutRequestID"):
        parse_stk_callback(raw)


@pytest.mark.parametrize(
    "document",
    [
        {"CheckoutRequestID": 10**5000, "ResultCode": 1},
        {"CheckoutRequestID": "x", "ResultCode": 10**5000},
        {"CheckoutRequestID": "x", "ResultCode": Decimal("sNaN")},
        {"CheckoutRequestID": "x", "ResultCode": Decimal("NaN")},
    ],
    ids=["huge-int-id", "huge-int-code", "snan-code", "nan-code"],
)
def test_dict_input_with_unrepresentable_numbers_is_a_payload_error(document):
    """Was (dict input only): ValueError for huge ints, decimal.InvalidOperation for sNaN."""
    with pytest.raises(PayloadError):
        parse_stk_callback(document)
