import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wuye.core.pii import OwnerKeys, Pseudonymizer, mask_id_number, mask_phone

id_numbers = st.from_regex(r"\A[1-6][0-9]{16}[0-9X]\Z")
phones = st.from_regex(r"\A1[3-9][0-9]{9}\Z")


@given(id_numbers)
def test_a_keyed_hash_is_the_same_for_the_same_identity(number: str) -> None:
    assert Pseudonymizer(b"key", purpose="resident").key_of(number) == Pseudonymizer(
        b"key", purpose="resident"
    ).key_of(number)


@given(id_numbers)
def test_a_keyed_hash_is_32_hex_characters_and_never_contains_the_identity(number: str) -> None:
    key = Pseudonymizer(b"key", purpose="resident").key_of(number)
    assert re.fullmatch(r"[0-9a-f]{32}", key)
    assert number not in key
    assert number[6:14] not in key  # the birth date


@given(id_numbers)
def test_a_keyed_hash_depends_on_the_key(number: str) -> None:
    assert Pseudonymizer(b"key-a", purpose="resident").key_of(number) != Pseudonymizer(
        b"key-b", purpose="resident"
    ).key_of(number)


@given(id_numbers)
def test_a_keyed_hash_depends_on_the_purpose(number: str) -> None:
    assert Pseudonymizer(b"key", purpose="resident").key_of(number) != Pseudonymizer(
        b"key", purpose="owner"
    ).key_of(number)


@given(id_numbers, id_numbers)
def test_different_identities_get_different_keyed_hashes(a: str, b: str) -> None:
    pseudonymizer = Pseudonymizer(b"key", purpose="resident")
    assert (pseudonymizer.key_of(a) == pseudonymizer.key_of(b)) == (a == b)


def test_a_pseudonymizer_without_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="WUYE_PII_KEY"):
        Pseudonymizer(b"", purpose="resident")


def test_an_id_number_is_masked_as_id_cards_are_shown() -> None:
    assert mask_id_number("15060219900101123X") == "1506**********123X"


@given(id_numbers)
def test_a_masked_id_number_keeps_only_the_region_prefix_and_the_last_four(number: str) -> None:
    masked = mask_id_number(number)
    assert len(masked) == len(number)
    assert masked[:4] == number[:4]
    assert masked[-4:] == number[-4:]
    assert set(masked[4:-4]) == {"*"}


@pytest.mark.parametrize("short", ["", "1", "12345678"])
def test_a_short_id_number_is_masked_whole(short: str) -> None:
    assert mask_id_number(short) == "*" * len(short)


@pytest.mark.parametrize("phone", ["13812345678", "138-1234-5678", "138 1234 5678"])
def test_a_phone_keeps_its_first_three_and_last_four_digits(phone: str) -> None:
    assert mask_phone(phone) == "138****5678"


@given(phones)
def test_a_masked_phone_hides_the_middle_digits(phone: str) -> None:
    masked = mask_phone(phone)
    assert masked == phone[:3] + "****" + phone[-4:]
    assert phone not in masked


@pytest.mark.parametrize("short", ["", "110", "1234567", "123-4567"])
def test_a_short_phone_is_masked_whole(short: str) -> None:
    assert mask_phone(short) == "*" * len(short.replace("-", ""))


@given(id_numbers)
def test_an_owner_key_is_the_owner_purposes_keyed_hash_of_the_person(number: str) -> None:
    owners = OwnerKeys(b"key")
    assert owners.of_person(number) == owners.key_of("PERSON", number, "150602-aaaaaaaaaaaa")
    assert owners.of_person(number) == Pseudonymizer(b"key", purpose="owner").key_of(
        f"person:{number}"
    )
    # A practitioner who is the same person gets an unrelated key.
    assert owners.of_person(number) != Pseudonymizer(b"key", purpose="practitioner").key_of(
        number
    )


def test_the_developers_unsold_units_are_one_owner_per_project() -> None:
    owners = OwnerKeys(b"key")
    code = "91150602MA0N000000"
    here = owners.key_of("DEVELOPER_UNSOLD", code, "150602-aaaaaaaaaaaa")
    assert here == owners.key_of("DEVELOPER_UNSOLD", code, "150602-aaaaaaaaaaaa")
    assert here != owners.key_of("DEVELOPER_UNSOLD", code, "150602-bbbbbbbbbbbb")
    assert here != owners.key_of("ORGANIZATION", code, "150602-aaaaaaaaaaaa")
