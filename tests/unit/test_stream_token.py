import base64
import dataclasses
import hashlib
import hmac

import pytest

from shared.stream_token import InvalidStreamToken, mint_stream_token, verify_stream_token

SECRET = "s3cret"


def test_valid_token_binds_tenant_and_call():
    token = mint_stream_token(SECRET, "acme", "CA1", ttl_s=60, now=1000)
    grant = verify_stream_token(SECRET, token, call_sid="CA1", tenant_id="acme", now=1030)
    assert (grant.tenant_id, grant.call_sid, grant.expires_at) == ("acme", "CA1", 1060)


@pytest.mark.parametrize("mutate, reason", [
    (lambda t: t, None),
    (lambda t: t[:-2] + ("A" if t[-2] != "A" else "B") + t[-1], "bad signature"),
    (lambda t: "x" + t, "bad signature|malformed"),
    (lambda t: "garbage", "malformed"),
    (lambda t: "", "malformed"),
])
def test_tampering_is_detected(mutate, reason):
    token = mutate(mint_stream_token(SECRET, "acme", "CA1", now=1000))
    if reason is None:
        verify_stream_token(SECRET, token, call_sid="CA1", now=1000)
        return
    with pytest.raises(InvalidStreamToken, match=reason):
        verify_stream_token(SECRET, token, call_sid="CA1", now=1000)


def test_expired_other_call_other_tenant_other_secret():
    token = mint_stream_token(SECRET, "acme", "CA1", ttl_s=10, now=1000)
    with pytest.raises(InvalidStreamToken, match="expired"):
        verify_stream_token(SECRET, token, call_sid="CA1", now=1011)
    with pytest.raises(InvalidStreamToken, match="another call"):
        verify_stream_token(SECRET, token, call_sid="CA2", now=1000)
    with pytest.raises(InvalidStreamToken, match="another tenant"):
        verify_stream_token(SECRET, token, call_sid="CA1", tenant_id="globex", now=1000)
    with pytest.raises(InvalidStreamToken, match="bad signature"):
        verify_stream_token("other", token, call_sid="CA1", now=1000)
    with pytest.raises(InvalidStreamToken, match="no stream token secret"):
        verify_stream_token("", token, call_sid="CA1", now=1000)


def test_token_is_valid_until_its_expiry_second_inclusive_and_lives_300_s_by_default():
    token = mint_stream_token(SECRET, "acme", "CA1", now=1000)
    assert verify_stream_token(SECRET, token, call_sid="CA1", now=1300).expires_at == 1300
    with pytest.raises(InvalidStreamToken, match="expired"):
        verify_stream_token(SECRET, token, call_sid="CA1", now=1300.5)


@pytest.mark.parametrize("tenant", ["a" * n for n in range(1, 13)])
def test_round_trip_for_every_padding_length(tenant):
    """base64url without padding: payloads of every length modulo 3 must decode."""
    grant = verify_stream_token(SECRET, mint_stream_token(SECRET, tenant, "CA1", now=1000), call_sid="CA1", now=1000)
    assert grant.tenant_id == tenant


@pytest.mark.parametrize("tenant, call_sid", [("ac|me", "CA1"), ("acme", "CA|1")])
def test_separator_in_either_field_is_refused_at_mint(tenant, call_sid):
    with pytest.raises(ValueError, match="must not contain"):
        mint_stream_token(SECRET, tenant, call_sid)


@pytest.mark.parametrize("payload", [b"acme|CA1", b"acme|CA1|soon", b"acme|CA1|1300|x"])
def test_correctly_signed_but_malformed_payload_is_refused(payload):
    """A payload signed with the right secret but not tenant|call|expiry (a minting bug, a stolen signer)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    token = f"{b64(payload)}.{b64(hmac.new(SECRET.encode(), payload, hashlib.sha256).digest())}"
    with pytest.raises(InvalidStreamToken, match="malformed payload"):
        verify_stream_token(SECRET, token, call_sid="CA1", now=1000)


def test_grant_cannot_be_altered_after_verification():
    grant = verify_stream_token(SECRET, mint_stream_token(SECRET, "acme", "CA1", now=1000), call_sid="CA1", now=1000)
    with pytest.raises(dataclasses.FrozenInstanceError):
        grant.tenant_id = "globex"  # type: ignore[misc]
