"""SigV4 verification against requests signed by botocore itself."""

from __future__ import annotations

import datetime as dt
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from pipeline.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    ThrottlingException,
    UnrecognizedClientException,
)
from pipeline.protocol.sigv4 import ReplayedSignatureError, ReplayGuard, SignedRequest, SigV4Verifier

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SIGNED_AT = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def sign(
    body: bytes = b'{"CollectionId": "c"}',
    target: str = "RekognitionService.CreateCollection",
    key: str = KEY,
    secret: str = SECRET,
    at: dt.datetime = SIGNED_AT,
    url: str = "http://127.0.0.1:8080/",
    service: str = "rekognition",
) -> SignedRequest:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"},
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=at.replace(tzinfo=None)):
        SigV4Auth(Credentials(key, secret), service, "eu-west-1").add_auth(request)
    prepared = request.prepare()
    headers = [(name, value) for name, value in prepared.headers.items()]
    headers.append(("Host", url.split("/")[2]))
    path, _, query = url.split("/", 3)[3].partition("?")
    return SignedRequest(method="POST", path="/" + path, query=query, headers=headers, body=body)


def verifier(now: dt.datetime = SIGNED_AT, skew: float = 300) -> SigV4Verifier:
    return SigV4Verifier(
        {KEY: SECRET, "OTHER": "other-secret"}, max_skew_s=skew, clock=lambda: now.timestamp()
    )


def test_valid_signature_identifies_the_key_and_region() -> None:
    identity = verifier().verify(sign())
    assert identity.access_key_id == KEY and identity.region == "eu-west-1"


def test_query_string_and_path_are_covered() -> None:
    request = sign(url="http://localhost:9000/prefix/x?b=2&a=1%2F")
    assert verifier().verify(request).access_key_id == KEY
    tampered = SignedRequest(request.method, request.path, "b=2&a=2", request.headers, request.body)
    with pytest.raises(InvalidSignatureException):
        verifier().verify(tampered)


def test_unsigned_request() -> None:
    request = SignedRequest(
        "POST", "/", "", [("Host", "h"), ("X-Amz-Target", "RekognitionService.ListCollections")], b"{}"
    )
    with pytest.raises(MissingAuthenticationTokenException):
        verifier().verify(request)


def test_unknown_key() -> None:
    with pytest.raises(UnrecognizedClientException, match="security token"):
        verifier().verify(sign(key="AKIDUNKNOWN"))


def test_wrong_secret() -> None:
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verifier().verify(sign(secret="not-the-secret"))


def test_tampered_body_and_header() -> None:
    request = sign()
    with pytest.raises(InvalidSignatureException):
        verifier().verify(SignedRequest("POST", "/", "", request.headers, b'{"CollectionId": "d"}'))
    headers = [
        (n, "RekognitionService.DeleteCollection" if n.lower() == "x-amz-target" else v)
        for n, v in request.headers
    ]
    with pytest.raises(InvalidSignatureException):
        verifier().verify(SignedRequest("POST", "/", "", headers, request.body))


def test_wrong_service_scope() -> None:
    with pytest.raises(InvalidSignatureException, match="service"):
        verifier().verify(sign(service="s3"))


def test_expired_and_future_dates() -> None:
    request = sign()
    late = SIGNED_AT + dt.timedelta(minutes=5, seconds=1)
    with pytest.raises(
        InvalidSignatureException,
        match=r"Signature expired: 20240501T120000Z is now earlier than 20240501T120001Z",
    ):
        verifier(now=late).verify(request)
    early = SIGNED_AT - dt.timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidSignatureException, match="not yet current"):
        verifier(now=early).verify(request)
    # inside the limit on either side is fine
    verifier(now=SIGNED_AT + dt.timedelta(minutes=4, seconds=59)).verify(request)
    verifier(now=SIGNED_AT - dt.timedelta(minutes=4, seconds=59)).verify(request)


def test_malformed_authorization_headers() -> None:
    base = [("Host", "h"), ("X-Amz-Date", "20240501T120000Z")]
    for value in (
        "Basic abc",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/rekognition/aws4_request",
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE, SignedHeaders=host, Signature=00",
    ):
        with pytest.raises(InvalidSignatureException):
            verifier().verify(SignedRequest("POST", "/", "", [*base, ("Authorization", value)], b""))


def test_date_must_be_signed_and_match_scope() -> None:
    request = sign()
    no_date = [(n, v) for n, v in request.headers if n.lower() != "x-amz-date"]
    with pytest.raises(InvalidSignatureException, match="X-Amz-Date"):
        verifier().verify(SignedRequest("POST", "/", "", no_date, request.body))
    other_day = [(n, "20240502T120000Z" if n.lower() == "x-amz-date" else v) for n, v in request.headers]
    with pytest.raises(InvalidSignatureException, match="Credential scope"):
        verifier().verify(SignedRequest("POST", "/", "", other_day, request.body))


def test_signature_is_accepted_once_while_its_date_is_in_the_window() -> None:
    now = [SIGNED_AT.timestamp()]
    v = SigV4Verifier({KEY: SECRET}, clock=lambda: now[0])
    request = sign()
    v.verify(request)
    for later in (0, 1, 120, 299):  # the same request again, any time its date still passes
        now[0] = SIGNED_AT.timestamp() + later
        with pytest.raises(ReplayedSignatureError, match="already been used") as info:
            v.verify(request)
        assert info.value.code == "ThrottlingException"  # retryable: an SDK signs its retry anew
    now[0] = SIGNED_AT.timestamp() + 301  # the date has left the window: refused by the date check
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        v.verify(request)
    v.verify(sign(at=SIGNED_AT + dt.timedelta(seconds=301)))  # a freshly signed one is fine
    assert len(v.replays) == 1  # the expired signature is no longer remembered, the new one is


def test_replay_guard_remembers_by_time_not_count() -> None:
    """At 1,100 requests/s, the first signature is still refused after 250 s (275,000 signatures later),
    while the guard holds only the signatures of the last window."""
    guard = ReplayGuard(max_entries=10**6)
    skew, rate, seconds = 300.0, 1100, 250
    first = b"\xff" * 32
    assert guard.accept(first, expires_at=skew, now=0) == "new"
    for i in range(rate * seconds):
        now = i / rate
        assert guard.accept(i.to_bytes(32, "big"), expires_at=now + skew, now=now) == "new"
    assert guard.accept(first, expires_at=skew, now=seconds) == "seen"
    assert guard.accept((0).to_bytes(32, "big"), expires_at=skew, now=seconds) == "seen"
    # past its expiry a signature is forgotten (the date check refuses it by then)
    end = seconds + skew + 2
    assert guard.accept(first, expires_at=end + skew, now=end) == "new"
    assert len(guard) <= rate * 3 + 1


def test_full_replay_guard_refuses_instead_of_forgetting() -> None:
    guard = ReplayGuard(max_entries=3)
    for name in (b"a", b"b", b"c"):
        assert guard.accept(name, expires_at=10, now=0) == "new"
    assert guard.accept(b"d", expires_at=10, now=1) == "full"
    assert guard.accept(b"a", expires_at=10, now=1) == "seen"  # nothing was forgotten
    assert guard.accept(b"d", expires_at=30, now=12) == "new"  # room again once a, b, c expired
    assert len(guard) == 1
    now = [SIGNED_AT.timestamp()]
    v = SigV4Verifier({KEY: SECRET}, replay_cache_entries=1, clock=lambda: now[0])
    v.verify(sign())
    with pytest.raises(ThrottlingException, match="remembers at most 1 signatures") as info:
        v.verify(sign(body=b'{"CollectionId": "other"}'))
    assert not isinstance(info.value, ReplayedSignatureError)


def sign_only(headers_signed: dict[str, str], extra: dict[str, str]) -> SignedRequest:
    """A request signed over ``headers_signed`` (plus host and x-amz-date), ``extra`` added after signing."""
    body = b'{"CollectionId": "c"}'
    request = AWSRequest(method="POST", url="http://127.0.0.1:8080/", data=body, headers=headers_signed)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT.replace(tzinfo=None)):
        SigV4Auth(Credentials(KEY, SECRET), "rekognition", "eu-west-1").add_auth(request)
    headers = [*request.prepare().headers.items(), ("Host", "127.0.0.1:8080"), *extra.items()]
    return SignedRequest(method="POST", path="/", query="", headers=headers, body=body)


def test_signature_must_cover_target_and_content_type() -> None:
    target = {"X-Amz-Target": "RekognitionService.DeleteCollection"}
    content_type = {"Content-Type": "application/x-amz-json-1.1"}
    for signed, unsigned, missing in (
        ({}, {**target, **content_type}, "Content-Type"),
        (content_type, target, "X-Amz-Target"),
        (target, content_type, "Content-Type"),
    ):
        request = sign_only(signed, unsigned)
        with pytest.raises(InvalidSignatureException, match=f"'{missing}' must be a 'SignedHeader'"):
            verifier().check_headers(request.headers)
        with pytest.raises(InvalidSignatureException, match="SignedHeader"):
            verifier().verify(request)
    assert verifier().verify(sign_only({**target, **content_type}, {})).access_key_id == KEY


def test_headers_are_checked_without_the_body() -> None:
    request = sign()
    claim = verifier().check_headers(request.headers)
    assert (claim.access_key_id, claim.region, claim.service) == (KEY, "eu-west-1", "rekognition")
    assert claim.signed_headers == ("content-type", "host", "x-amz-date", "x-amz-target")
    with pytest.raises(UnrecognizedClientException):
        verifier().check_headers(sign(key="AKIDUNKNOWN").headers)
    with pytest.raises(InvalidSignatureException, match="expired"):
        verifier(now=SIGNED_AT + dt.timedelta(minutes=6)).check_headers(request.headers)
    bad_region = [
        (n, v.replace("/eu-west-1/", "/EU WEST/") if n == "Authorization" else v) for n, v in request.headers
    ]
    with pytest.raises(InvalidSignatureException, match="valid region"):
        verifier().check_headers(bad_region)
    # the signature itself needs the body: a header check passes a wrong secret
    verifier().check_headers(sign(secret="not-the-secret").headers)


def test_needs_credentials() -> None:
    with pytest.raises(ValueError, match="access key"):
        SigV4Verifier({})


def test_declared_payload_hash_must_match_the_body() -> None:
    request = sign()
    for declared in ("UNSIGNED-PAYLOAD", "0" * 64):
        headers = [*request.headers, ("X-Amz-Content-SHA256", declared)]
        with pytest.raises(InvalidSignatureException, match="X-Amz-Content-SHA256"):
            verifier().verify(SignedRequest("POST", "/", "", headers, request.body))


def test_non_ascii_signature_is_an_invalid_signature() -> None:
    request = sign()
    headers = [
        (name, value.rsplit("Signature=", 1)[0] + "Signature=\xe9\xe9" if name == "Authorization" else value)
        for name, value in request.headers
    ]
    forged = SignedRequest(request.method, request.path, request.query, headers, request.body)
    with pytest.raises(InvalidSignatureException, match="does not match"):
        verifier().verify(forged)


def test_date_is_checked_again_when_the_body_has_arrived() -> None:
    """A replay whose headers arrive just inside the window and whose body arrives after it is
    refused: the replay guard has forgotten the signature by then, the date check has not."""
    skew = 300.0
    now = [SIGNED_AT.timestamp()]
    v = SigV4Verifier({KEY: SECRET}, max_skew_s=skew, clock=lambda: now[0])
    request = sign()
    v.verify(request)  # the original request
    now[0] = SIGNED_AT.timestamp() + skew - 1
    claim = v.check_headers(request.headers)  # the captured copy's headers, still in the window
    now[0] = SIGNED_AT.timestamp() + skew + 2  # its body held back past the window
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        v.verify_signature(request, claim)
    # a fresh request whose body is slow is refused the same way, not run
    fresh = sign(body=b'{"CollectionId": "late"}')
    now[0] = SIGNED_AT.timestamp() + 10
    claim = v.check_headers(fresh.headers)
    now[0] = SIGNED_AT.timestamp() + skew + 2
    with pytest.raises(InvalidSignatureException, match="Signature expired"):
        v.verify_signature(fresh, claim)
