"""AWS Signature Version 4 verification for the server.

A request is accepted when its ``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
Signature=...`` header carries a signature that the configured secret for its access key id
reproduces, its ``X-Amz-Date`` is within the clock-skew limit of the server's clock (AWS uses 5
minutes), its SignedHeaders cover what the request does (``content-type``, ``host``,
``x-amz-date`` and ``x-amz-target``, as every AWS SDK signs them), and its signature has not been
accepted before (replay guard, see :class:`ReplayGuard`).

Verification has two steps, so that a request that cannot be valid costs almost nothing:
:meth:`SigV4Verifier.check_headers` checks everything the headers alone decide (header present
and well formed, known access key, credential scope, SignedHeaders, date) before the server reads
the body; :meth:`SigV4Verifier.verify_signature` then hashes the body and checks the signature.

Errors, as AWS answers them: no Authorization header -> MissingAuthenticationTokenException;
unknown access key id -> UnrecognizedClientException; wrong signature, malformed header, missing
signed headers or an expired/future date -> InvalidSignatureException; a signature already
accepted, or a full replay guard -> ThrottlingException (retryable: an SDK signs its retry anew).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol
from urllib.parse import quote, unquote

from pipeline.errors import (
    InvalidSignatureException,
    MissingAuthenticationTokenException,
    ThrottlingException,
    UnrecognizedClientException,
)

ALGORITHM = "AWS4-HMAC-SHA256"
DEFAULT_MAX_SKEW_S = 300.0
"""Largest accepted difference between a request's X-Amz-Date and the server clock (seconds)."""

DEFAULT_REPLAY_CACHE_ENTRIES = 1_000_000
"""Signatures the replay guard remembers at most (about 105 MiB); beyond it requests are throttled."""

REQUIRED_SIGNED_HEADERS = ("content-type", "host", "x-amz-date", "x-amz-target")
"""Headers every accepted signature must cover (all AWS SDKs and the AWS CLI sign them)."""

REPLAY_RETRY_DELAY_S = 1.0
"""How long the server waits before refusing a repeated signature: X-Amz-Date has one-second
resolution, so a client's retry signed after the answer carries a new date, hence a new signature."""

_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_SPACES = re.compile(r"\s+")
_REGION = re.compile(r"[a-z0-9-]{1,64}")
_SCOPE_DATE = re.compile(r"[0-9]{8}")


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


@dataclass(frozen=True)
class SignatureClaim:
    """What a request's headers claim, checked by :meth:`SigV4Verifier.check_headers`.

    signed_at: the X-Amz-Date as seconds since the epoch; signature: 64 lower-case hex digits.
    """

    access_key_id: str
    scope_date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    signed_at: float


class ReplayedSignatureError(ThrottlingException):
    """A signature that was already accepted: answer after ``retry_after_s`` seconds, so that the
    client's retry is signed at a later second (hence differently)."""

    retry_after_s = REPLAY_RETRY_DELAY_S


ReplayedSignatureError.code = ThrottlingException.code  # answered as the retryable ThrottlingException


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
            " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
            + f" Expected '{ALGORITHM} Credential=..., SignedHeaders=..., Signature=...'."
        )
    signed = fields["SignedHeaders"].lower().split(";")
    return fields["Credential"], signed, fields["Signature"].lower()


class SignatureRecord(Protocol):
    """Where accepted signatures are remembered: :class:`ReplayGuard` in this process, or a store
    shared by several servers (the PostgreSQL store's, so a request accepted by one server is a
    replay on all of them)."""

    max_entries: int
    """Live signatures remembered at most (0: no limit of its own)."""

    def accept(self, signature: bytes, expires_at: float, now: float) -> str:
        """ "new" (remembered now), "seen" (a replay) or "full" (not remembered: no room)."""
        ...


class ReplayGuard:
    """Remembers every accepted signature until its X-Amz-Date leaves the clock-skew window. Thread-safe.

    A signature is accepted once: while its date could still pass the date check, the same
    signature again is a replay. Memory is bounded by time (an entry is dropped when the date check
    would refuse the signature anyway, at most twice the skew after it was accepted) and by
    ``max_entries``: when that many signatures are live, :meth:`accept` answers "full" instead of
    forgetting any. Each entry costs about :data:`BYTES_PER_ENTRY` bytes.
    """

    BYTES_PER_ENTRY = 110
    """Measured with tracemalloc (102-108 B): a 32-byte digest object, its set slot, its expiry-bucket slot."""

    def __init__(self, max_entries: int = DEFAULT_REPLAY_CACHE_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("--replay-cache-entries must be at least 1 (room for one signature)")
        self.max_entries = max_entries
        self._seen: set[bytes] = set()
        self._expiring: dict[int, list[bytes]] = {}
        """Whole second at which entries leave the window -> their digests."""
        self._purged_until = -1
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, signature: bytes, expires_at: float, now: float) -> str:
        """Record ``signature`` (a digest) valid until ``expires_at`` (epoch s) at time ``now``.

        Returns "new" (accepted and remembered), "seen" (a replay) or "full" (not remembered:
        max_entries live signatures already).
        """
        with self._lock:
            self._purge(now)
            if signature in self._seen:
                return "seen"
            if len(self._seen) >= self.max_entries:
                return "full"
            self._seen.add(signature)
            # dropped after the whole second at or after expires_at: never before it expires
            self._expiring.setdefault(int(expires_at) + 1, []).append(signature)
            return "new"

    def _purge(self, now: float) -> None:
        second = int(now)
        if second <= self._purged_until or not self._expiring:
            self._purged_until = max(self._purged_until, second)
            return
        if second - self._purged_until > len(self._expiring):
            due = [s for s in self._expiring if s <= second]
        else:
            due = [s for s in range(self._purged_until + 1, second + 1) if s in self._expiring]
        for key in due:
            self._seen.difference_update(self._expiring.pop(key))
        self._purged_until = second


class SigV4Verifier:
    """Verifies SigV4-signed requests against access key id -> secret credentials.

    credentials: access key id -> secret access key; service: the signing name clients use
    ("rekognition"); max_skew_s: the clock-skew limit (seconds); replay_cache_entries: signatures
    remembered at most (see :class:`ReplayGuard`); clock: seconds since the epoch (injected in tests).
    """

    def __init__(
        self,
        credentials: Mapping[str, str],
        service: str = "rekognition",
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        replay_cache_entries: int = DEFAULT_REPLAY_CACHE_ENTRIES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not credentials:
            raise ValueError("SigV4 verification needs at least one access key id and secret")
        if not (math.isfinite(max_skew_s) and max_skew_s > 0):
            raise ValueError(f"--max-clock-skew-s must be a positive number of seconds, not {max_skew_s:g}")
        self.credentials = dict(credentials)
        self.service = service
        self.max_skew_s = max_skew_s
        self._now = clock
        self.replays: SignatureRecord = ReplayGuard(max_entries=replay_cache_entries)
        """Accepted signatures; a shared store's record replaces it where servers share credentials."""

    def verify(self, request: SignedRequest) -> Identity:
        """Identity of the signer, or raise the AWS error for an unsigned/invalid/expired/replayed request."""
        return self.verify_signature(request, self.check_headers(request.headers))

    def check_headers(self, headers: Sequence[tuple[str, str]]) -> SignatureClaim:
        """Everything the headers alone decide, without the body; raise the AWS error when it fails.

        Checks: Authorization present and well formed, a known access key id, the credential scope
        (YYYYMMDD/region/<service>/aws4_request), SignedHeaders covering
        :data:`REQUIRED_SIGNED_HEADERS`, and X-Amz-Date within the clock-skew limit.
        """
        by_name = {name.lower(): value for name, value in headers}
        authorization = by_name.get("authorization")
        if not authorization:
            raise MissingAuthenticationTokenException("Missing Authentication Token")
        credential, signed_headers, signature = _parse_authorization(authorization)
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise InvalidSignatureException(
                "Credential must have the form <AccessKeyId>/<YYYYMMDD>/<region>/<service>/aws4_request."
            )
        access_key_id, scope_date, region, service, _ = parts
        if access_key_id not in self.credentials:
            raise UnrecognizedClientException("The security token included in the request is invalid.")
        if service != self.service:
            raise InvalidSignatureException(
                f"Credential should be scoped to correct service: '{self.service}'."
            )
        if not _REGION.fullmatch(region):
            raise InvalidSignatureException("Credential should be scoped to a valid region.")
        if not _SCOPE_DATE.fullmatch(scope_date):
            raise InvalidSignatureException(
                f"Date {scope_date[:20]!r} in Credential scope is not in the form YYYYMMDD."
            )
        for required in REQUIRED_SIGNED_HEADERS:
            if required not in signed_headers:
                shown = "-".join(word.capitalize() for word in required.split("-"))
                raise InvalidSignatureException(
                    f"'{shown}' must be a 'SignedHeader' in the AWS Authorization "
                    f"(SignedHeaders must include {';'.join(REQUIRED_SIGNED_HEADERS)})."
                )
        amz_date = by_name.get("x-amz-date")
        if amz_date is None:
            raise InvalidSignatureException(
                "Missing X-Amz-Date header: the request must carry its signing time."
            )
        signed_at = self._check_date(amz_date, scope_date)
        return SignatureClaim(
            access_key_id=access_key_id,
            scope_date=scope_date,
            region=region,
            service=service,
            signed_headers=tuple(signed_headers),
            signature=signature,
            amz_date=amz_date,
            signed_at=signed_at,
        )

    def verify_signature(self, request: SignedRequest, claim: SignatureClaim) -> Identity:
        """Check the body hash and the signature of a request whose headers passed check_headers.

        Raises InvalidSignatureException for a wrong signature or a date that left the clock-skew
        window while the body arrived, ReplayedSignatureError (a ThrottlingException) for a
        signature accepted before, ThrottlingException when the replay guard is full.
        """
        now = self._now()
        # The date is checked again at this later clock reading: the replay guard forgets a
        # signature once its date has left the window, so a replay whose body arrived late must be
        # refused here rather than found "new".
        self._refuse_outside_window(claim.amz_date, claim.signed_at, now)
        by_name = {name.lower(): value for name, value in request.headers}
        payload_hash = hashlib.sha256(request.body).hexdigest()
        declared_hash = by_name.get("x-amz-content-sha256")
        if declared_hash is not None and declared_hash != payload_hash:
            # unsigned payloads are an S3 feature; here the body is always covered by the signature
            raise InvalidSignatureException("X-Amz-Content-SHA256 does not match the request body.")
        canonical = canonical_request(request, claim.signed_headers, payload_hash)
        scope = f"{claim.scope_date}/{claim.region}/{claim.service}/aws4_request"
        string_to_sign = "\n".join(
            [ALGORITHM, claim.amz_date, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
        )
        secret = self.credentials[claim.access_key_id]
        key = signing_key(secret, claim.scope_date, claim.region, claim.service)
        expected = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode("ascii"), claim.signature.encode("utf-8")):
            raise InvalidSignatureException(
                "The request signature we calculated does not match the signature you provided. "
                "Check your AWS Secret Access Key and signing method."
            )
        verdict = self.replays.accept(
            bytes.fromhex(expected), expires_at=claim.signed_at + self.max_skew_s, now=now
        )
        if verdict == "seen":
            raise ReplayedSignatureError(
                "This request's signature has already been used: a signed request is accepted once "
                f"while its X-Amz-Date is within the {self.max_skew_s:g} s clock-skew limit. Sign the "
                "request again (SDK retries do)."
            )
        if verdict == "full":
            raise ThrottlingException(
                f"Too many signed requests: the server remembers at most {self.replays.max_entries} "
                f"signatures from the last {2 * self.max_skew_s:g} s to refuse replays. Retry later."
            )
        return Identity(access_key_id=claim.access_key_id, region=claim.region)

    def _check_date(self, amz_date: str, scope_date: str) -> float:
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
        signed_s = signed_at.timestamp()
        self._refuse_outside_window(amz_date, signed_s, self._now())
        return signed_s

    def _refuse_outside_window(self, amz_date: str, signed_s: float, now: float) -> None:
        """Raise InvalidSignatureException when ``signed_s`` (epoch s) is more than max_skew_s from ``now``."""
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
