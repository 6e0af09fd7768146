import pytest

from core.logging import mask_text
from core.phones import InvalidPhoneNumber, mask_phone, normalize_phone


@pytest.mark.parametrize(
    "raw",
    [
        "0712345678",
        "+254712345678",
        "254712345678",
        "712345678",
        "0712 345 678",
        "0712-345-678",
        "+254 (712) 345678",
        712345678,
        254712345678,
        "2540712345678",
    ],
)
def test_every_kenyan_form_of_a_07_number_normalises(raw):
    assert normalize_phone(raw) == "254712345678"


@pytest.mark.parametrize("raw", ["0112345678", "+254112345678", "112345678", "254112345678"])
def test_01_numbers_normalise_to_2541(raw):
    assert normalize_phone(raw) == "254112345678"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "0812345678",
        "+255712345678",
        "07123",
        "071234567890",
        "abc",
        "0712a45678",
        None,
        True,
        7.12e8,
        "2547123456789",
        "07\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
        "0712\uff13\uff14\uff15\uff16\uff17\uff18",  # full-width digits
    ],
)
def test_non_kenyan_mobile_numbers_are_refused_with_a_message(raw):
    with pytest.raises(InvalidPhoneNumber) as error:
        normalize_phone(raw)
    assert str(error.value)


def test_mask_phone_keeps_only_ends():
    assert mask_phone("254712345678") == "2547****5678"


def test_log_masking_covers_every_written_form():
    text = "payer 254712345678 and 0712345678 paid; receipt 20261127103045 untouched"
    masked = mask_text(text)
    assert "254712345678" not in masked and "0712345678" not in masked
    assert "20261127103045" in masked
