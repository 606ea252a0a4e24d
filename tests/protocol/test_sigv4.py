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
    UnrecognizedClientException,
)
from pipeline.protocol.sigv4 import ReplayGuard, SignedRequest, SigV4Verifier

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


def test_signature_is_usable_only_shortly_after_its_first_use() -> None:
    now = [SIGNED_AT.timestamp()]
    v = SigV4Verifier({KEY: SECRET}, replay_window_s=5, clock=lambda: now[0])
    request = sign()
    v.verify(request)
    now[0] += 4  # identical calls signed within one second arrive together: accepted
    v.verify(request)
    now[0] += 2  # the same request 6 s after its first use is a replay
    with pytest.raises(InvalidSignatureException, match="already been used"):
        v.verify(request)
    v.verify(sign(at=SIGNED_AT + dt.timedelta(seconds=6)))  # a freshly signed one is fine


def test_replay_guard_forgets_expired_and_bounds_memory() -> None:
    guard = ReplayGuard(window_s=1, max_entries=3)
    assert guard.accept("a", expires=10, now=0)
    assert not guard.accept("a", expires=10, now=5)
    assert guard.accept("a", expires=20, now=11)  # expired, so forgotten and new again
    for sig in "bcd":
        assert guard.accept(sig, expires=100, now=12)
    assert len(guard._first_seen) <= 3


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
