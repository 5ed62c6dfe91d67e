from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from safehaven.domain.nhs_number import check_digit, is_valid_nhs_number


def test_published_examples():
    # NHS Data Dictionary worked example: 943 476 5919 is valid.
    assert is_valid_nhs_number("9434765919")
    assert not is_valid_nhs_number("9434765918")
    assert not is_valid_nhs_number("943476591")
    assert not is_valid_nhs_number("94347659190")
    assert not is_valid_nhs_number("943476591a")
    assert not is_valid_nhs_number("９４３４７６５９１９")  # full-width digits


@given(st.text(alphabet="0123456789", min_size=9, max_size=9))
def test_check_digit_makes_valid_numbers_and_catches_single_digit_errors(nine):
    digit = check_digit(nine)
    if digit is None:
        assert not any(is_valid_nhs_number(nine + str(d)) for d in range(10))
        return
    number = nine + str(digit)
    assert is_valid_nhs_number(number)
    for pos in range(10):
        for d in "0123456789":
            if d != number[pos]:
                assert not is_valid_nhs_number(number[:pos] + d + number[pos + 1 :])
