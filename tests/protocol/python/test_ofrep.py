"""The stock OpenFeature Python SDK with the stock OFREP provider against a real server.

The provider calls the single-flag endpoint ``POST /ofrep/v1/evaluate/flags/{key}`` per
evaluation. Unlike the JS clients it has separate integer and float getters and checks the JSON
type of the value (``42`` is an int, ``2.5`` and ``1.0`` are floats), so the server must keep
floats floats. The Rust harness (crates/cli/tests/it/protocol.rs) starts the server and sets
``SWITCHYARD_URL`` and ``SWITCHYARD_SDK_KEY``.
"""

import os
from collections import Counter

import pytest
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(
            f"{name} is not set: run through `cargo test -p switchyard --test integration protocol`"
            " or see tests/protocol/README.md",
            returncode=2,
        )
    return value


BASE_URL = _env("SWITCHYARD_URL").rstrip("/")
SDK_KEY = _env("SWITCHYARD_SDK_KEY")

USER = EvaluationContext(targeting_key="user-1")
SPLIT_VALUES = {"control": "control-value", "treatment": "treatment-value"}
WIDE_OBJECT = {"layout": "wide", "columns": 4, "sidebar": True, "ratio": 0.5, "tags": ["a", "b"]}


@pytest.fixture(scope="module")
def client():
    api.set_provider_and_wait(
        OFREPProvider(BASE_URL, headers_factory=lambda: {"Authorization": f"Bearer {SDK_KEY}"})
    )
    yield api.get_client("protocol-tests")
    api.shutdown()


def assert_success(details, value, variant, reason):
    assert details.error_code is None, f"unexpected error: {details.error_code} {details.error_message}"
    assert details.value == value
    assert type(details.value) is type(value)
    assert details.variant == variant
    assert details.reason == reason


def assert_error(details, default, error_code):
    assert details.error_code == error_code, f"got {details.error_code}: {details.error_message}"
    assert details.value == default
    assert type(details.value) is type(default)
    assert details.reason == Reason.ERROR


# typed values and details


def test_boolean_with_metadata(client):
    assert client.get_boolean_value("proto-bool", False, USER) is True
    details = client.get_boolean_details("proto-bool", False, USER)
    assert_success(details, True, "on", Reason.STATIC)
    assert details.flag_key == "proto-bool"
    assert dict(details.flag_metadata) == {"owner": "team-protocol", "tier": 2, "experimental": False}


def test_string_production_override(client):
    assert client.get_string_value("proto-string", "fallback", USER) == "green"
    assert_success(client.get_string_details("proto-string", "fallback", USER), "green", "green", Reason.STATIC)


def test_integer(client):
    assert_success(client.get_integer_details("proto-int", 0, USER), 42, "42", Reason.STATIC)


def test_float(client):
    assert_success(client.get_float_details("proto-float", 0.0, USER), 2.5, "2.5", Reason.STATIC)


def test_whole_float_stays_a_float(client):
    details = client.get_float_details("proto-float-whole", 0.0, USER)
    assert_success(details, 1.0, "1.0", Reason.STATIC)
    assert isinstance(details.value, float)


def test_int_and_float_are_not_interchangeable(client):
    assert_error(client.get_float_details("proto-int", 0.5, USER), 0.5, ErrorCode.TYPE_MISMATCH)
    assert_error(client.get_integer_details("proto-float-whole", 7, USER), 7, ErrorCode.TYPE_MISMATCH)


def test_object(client):
    assert client.get_object_value("proto-object", {}, USER) == WIDE_OBJECT
    assert_success(client.get_object_details("proto-object", {}, USER), WIDE_OBJECT, "wide", Reason.STATIC)


def test_x_api_key_authentication():
    api.set_provider_and_wait(
        OFREPProvider(BASE_URL, headers_factory=lambda: {"X-API-Key": SDK_KEY}), domain="x-api-key"
    )
    other = api.get_client("x-api-key")
    assert_success(other.get_boolean_details("proto-bool", False, USER), True, "on", Reason.STATIC)


# targeting


def test_targeting_match(client):
    context = EvaluationContext(targeting_key="user-1", attributes={"plan": "premium"})
    details = client.get_string_details("proto-targeting", "fallback", context)
    assert_success(details, "premium-experience", "premium-experience", Reason.TARGETING_MATCH)


@pytest.mark.parametrize(
    "context",
    [
        EvaluationContext(targeting_key="user-1", attributes={"plan": "free"}),
        USER,
        EvaluationContext(),
        None,
    ],
    ids=["other-plan", "no-plan", "empty-context", "no-context"],
)
def test_targeting_default(client, context):
    details = client.get_string_details("proto-targeting", "fallback", context)
    assert_success(details, "standard", "standard", Reason.DEFAULT)


def test_split_is_sticky_and_covers_both_variants(client):
    sticky = EvaluationContext(targeting_key="sticky-user")
    first = client.get_string_details("proto-split", "fallback", sticky)
    assert first.reason == Reason.SPLIT
    assert first.value == SPLIT_VALUES[first.variant]
    for _ in range(5):
        assert_success(client.get_string_details("proto-split", "fallback", sticky), first.value, first.variant, Reason.SPLIT)

    counts = Counter()
    for i in range(200):
        details = client.get_string_details("proto-split", "fallback", EvaluationContext(targeting_key=f"split-user-{i}"))
        assert details.reason == Reason.SPLIT
        assert details.value == SPLIT_VALUES[details.variant]
        counts[details.variant] += 1
    assert counts["control"] >= 50 and counts["treatment"] >= 50, f"50/50 split too skewed: {counts}"


def test_rollout_with_targeting_key(client):
    details = client.get_boolean_details("proto-rollout", False, USER)
    assert details.error_code is None, details.error_message
    assert (details.value, details.reason) in [(True, Reason.SPLIT), (False, Reason.DEFAULT)]


# disabled flags


def test_disabled_serves_its_default_variant(client):
    details = client.get_string_details("proto-disabled", "fallback", USER)
    assert_success(details, "alpha-value", "alpha", Reason.DISABLED)


def test_disabled_in_production_only(client):
    assert_success(client.get_boolean_details("proto-prod-off", True, USER), False, "off", Reason.DISABLED)


# errors


def test_missing_flag(client):
    assert client.get_boolean_value("no-such-flag", True, USER) is True
    assert_error(client.get_boolean_details("no-such-flag", True, USER), True, ErrorCode.FLAG_NOT_FOUND)
    assert_error(client.get_float_details("no-such-flag", 0.25, USER), 0.25, ErrorCode.FLAG_NOT_FOUND)


def test_wrong_type(client):
    assert_error(client.get_string_details("proto-bool", "fallback", USER), "fallback", ErrorCode.TYPE_MISMATCH)
    assert_error(client.get_integer_details("proto-string", 7, USER), 7, ErrorCode.TYPE_MISMATCH)
    assert_error(client.get_boolean_details("proto-object", False, USER), False, ErrorCode.TYPE_MISMATCH)
    assert_error(client.get_object_details("proto-string", {"a": 1}, USER), {"a": 1}, ErrorCode.TYPE_MISMATCH)


def test_missing_targeting_key(client):
    no_key = EvaluationContext(attributes={"plan": "premium"})
    assert_error(client.get_boolean_details("proto-rollout", True, no_key), True, ErrorCode.TARGETING_KEY_MISSING)
    assert_error(client.get_string_details("proto-split", "fallback", no_key), "fallback", ErrorCode.TARGETING_KEY_MISSING)
    assert_error(client.get_boolean_details("proto-rollout", True), True, ErrorCode.TARGETING_KEY_MISSING)


def test_non_string_targeting_key_is_an_invalid_context(client):
    context = EvaluationContext(targeting_key=42)  # type: ignore[arg-type]
    assert_error(client.get_boolean_details("proto-bool", False, context), False, ErrorCode.INVALID_CONTEXT)


def test_wrong_sdk_key():
    api.set_provider_and_wait(
        OFREPProvider(BASE_URL, headers_factory=lambda: {"Authorization": "Bearer sy_not_a_real_key"}),
        domain="bad-key",
    )
    other = api.get_client("bad-key")
    assert_error(other.get_boolean_details("proto-bool", False, USER), False, ErrorCode.GENERAL)
