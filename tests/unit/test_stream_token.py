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
