"""AWS Signature Version 4 verification for the server.

A request is accepted when its ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` header carries a signature that the configured secret for its access key id
reproduces, its ``X-Amz-Date`` is within the clock-skew limit of the server's clock (AWS uses 5
minutes), and its signature was first seen at most a few seconds ago (replay limit, see
:class:`ReplayGuard`).

Errors, as AWS answers them: no Authorization header -> MissingAuthenticationTokenException;
unknown access key id -> UnrecognizedClientException; wrong signature, malformed header or an
expired/future date -> InvalidSignatureException.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from pipeline.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
DEFAULT_MAX_SKEW_S = 300.0
"""Largest accepted difference between a request's X-Amz-Date and the server clock (seconds)."""

DEFAULT_REPLAY_WINDOW_S = 5.0
"""How long after its first use the same signature is still accepted (seconds)."""

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SignedRequest:
    """The parts of an HTTP request that SigV4 covers.

    path: the raw request path as sent (percent-encoding kept); query: the raw query string;
    headers: (name, value) pairs as received (any case, repeats kept); body: the raw body bytes.
    """

    method: str
    path: str
    query: str
    headers: Sequence[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Identity:
    """Who signed an accepted request: the access key id and the signed region."""

    access_key_id: str
    region: str


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The SigV4 signing key for a secret, a YYYYMMDD date, a region and a service name."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        pairs.append((_reencode(name), _reencode(value)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def _reencode(component: str) -> str:
    return quote(unquote(component.replace("+", " ")), safe="-_.~")


def canonical_request(request: SignedRequest, signed_headers: Sequence[str], payload_hash: str) -> str:
    """The SigV4 canonical request string (for the AWS JSON protocol's non-S3 rules)."""
    grouped: dict[str, list[str]] = {}
    for name, value in request.headers:
        grouped.setdefault(name.lower(), []).append(_SPACES.sub(" ", value.strip()))
    lines = [f"{name}:{','.join(grouped.get(name, []))}" for name in signed_headers]
    path = quote(request.path or "/", safe="/~")
    return "\n".join(
        [
            request.method.upper(),
            path,
            _canonical_query(request.query),
            "\n".join(lines) + "\n",
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise InvalidSignatureException(
            f"Unsupported Authorization algorithm {algorithm[:40]!r}; expected {ALGORITHM}."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if eq:
            fields[name.strip()] = field_value.strip()
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if name not in fields]
    if missing:
        raise InvalidSignatureException(
            f"Authorization header is missing {', '.join(missing)}; expected "
            f"'{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...'."
        )
    signed = fields["SignedHeaders"].lower().split(";")
    return fields["Credential"], signed, fields["Signature"].lower()


class ReplayGuard:
    """Limits how long one signature stays usable after the server first saw it. Thread-safe.

    A signature is accepted the first time and again only within ``window_s`` seconds of that
    first sighting (server clock): identical calls a client signs within one second carry identical
    signatures, while a request captured and replayed later is refused. Signatures are remembered
    until ``expires`` (when the date check would refuse them anyway); beyond ``max_entries`` the
    oldest are forgotten first.
    """

    def __init__(self, window_s: float = DEFAULT_REPLAY_WINDOW_S, max_entries: int = 200_000) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._first_seen: dict[str, float] = {}
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def accept(self, signature: str, expires: float, now: float) -> bool:
        """True when ``signature`` is new or was first seen at most ``window_s`` seconds before ``now``."""
        with self._lock:
            while self._order and (self._order[0][0] <= now or len(self._order) >= self.max_entries):
                _, old = self._order.popleft()
                self._first_seen.pop(old, None)
            first = self._first_seen.get(signature)
            if first is None:
                self._first_seen[signature] = now
                self._order.append((expires, signature))
                return True
            return now - first <= self.window_s


class SigV4Verifier:
    """Verifies SigV4-signed requests against access key id -> secret credentials.

    credentials: access key id -> secret access key; service: the signing name clients use
    ("rekognition"); max_skew_s: the clock-skew limit (seconds); replay_window_s: how long a
    signature stays usable after its first use (seconds); clock: seconds since the epoch (injected in tests).
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        service: str = "rekognition",
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        replay_window_s: float = DEFAULT_REPLAY_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not credentials:
            raise ValueError("SigV4 verification needs at least one access key id and secret")
        self.credentials = dict(credentials)
        self.service = service
        self.max_skew_s = max_skew_s
        self._now = clock
        self.replays = ReplayGuard(window_s=replay_window_s)

    def verify(self, request: SignedRequest) -> Identity:
        """Identity of the signer, or raise the AWS error for an unsigned/invalid/expired/replayed request."""
        headers = {name.lower(): value for name, value in request.headers}
        authorization = headers.get("authorization")
        if not authorization:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        credential, signed_headers, signature = _parse_authorization(authorization)
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise InvalidSignatureException(
                "Credential must have the form <AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request."
            )
        access_key_id, scope_date, region, service, _ = parts
        secret = self.credentials.get(access_key_id)
        if secret is None:
            raise UnrecognizedClientException("The security token included in the request is invalid.")
        if service != self.service:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self.service}'."
            )
        if "host" not in signed_headers:
            raise InvalidSignatureException("The host header must be signed (SignedHeaders lacks 'host').")
        amz_date = headers.get("x-amz-date")
        if amz_date is None:
            raise InvalidSignatureException(
                "Missing X-Amz-Date header: the request must carry its signing time."
            )
        if "x-amz-date" not in signed_headers:
            raise InvalidSignatureException("The X-Amz-Date header must be signed.")
        self._check_date(amz_date, scope_date)
        payload_hash = hashlib.sha256(request.body).hexdigest()
        declared_hash = headers.get("x-amz-content-sha256")
        if declared_hash is not None and declared_hash != payload_hash:
            # unsigned payloads are an S3 feature; here the body is always covered by the signature
            raise InvalidSignatureException("X-Amz-Content-SHA256 does not match the request body.")
        canonical = canonical_request(request, signed_headers, payload_hash)
        scope = f"{scope_date}/{region}/{service}/aws4_request"
        string_to_sign = "\n".join(
            [ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
        )
        key = signing_key(secret, scope_date, region, service)
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise InvalidSignatureException(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        now = self._now()
        if not self.replays.accept(signature, expires=now + 2 * self.max_skew_s, now=now):
            raise InvalidSignatureException(
                f"Signature has already been used: a signed request is accepted only within "
                f"{self.replays.window_s:g} s of its first use."
            )
        return Identity(access_key_id=access_key_id, region=region)

    def _check_date(self, amz_date: str, scope_date: str) -> None:
        try:
            signed_at = datetime.strptime(amz_date, _AMZ_DATE_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise InvalidSignatureException(
                f"X-Amz-Date {amz_date[:40]!r} is not in the form YYYYMMDDTHHMMSSZ."
            ) from None
        if not amz_date.startswith(scope_date):
            raise InvalidSignatureException(
                f"Date in Credential scope does not match YYYYMMDD from X-Amz-Date: {scope_date} vs {amz_date[:8]}."
            )
        now = self._now()
        signed_s = signed_at.timestamp()
        server = datetime.fromtimestamp(now, tz=timezone.utc)
        minutes = self.max_skew_s / 60
        if signed_s < now - self.max_skew_s:
            limit = datetime.fromtimestamp(now - self.max_skew_s, tz=timezone.utc)
            raise InvalidSignatureException(
                f"Signature expired: {amz_date} is now earlier than {limit.strftime(_AMZ_DATE_FORMAT)} "
                f"({server.strftime(_AMZ_DATE_FORMAT)} - {minutes:g} min.)"
            )
        if signed_s > now + self.max_skew_s:
            limit = datetime.fromtimestamp(now + self.max_skew_s, tz=timezone.utc)
            raise InvalidSignatureException(
                f"Signature not yet current: {amz_date} is still later than {limit.strftime(_AMZ_DATE_FORMAT)} "
                f"({server.strftime(_AMZ_DATE_FORMAT)} + {minutes:g} min.)"
            )
