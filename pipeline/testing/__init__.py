"""In-process Rekognition for an application's tests: boto3 clients answered by a real facepipe.

    import boto3
    import pipeline.testing

    with pipeline.testing.rekognition(data_dir=tmp_path) as fp:
        client = boto3.client("rekognition", region_name="eu-west-1")   # the application's own code
        client.create_collection(CollectionId="family")                 # answered by fp.service

Inside the block, every botocore client for Rekognition that is *created inside the block* (by
``boto3.client``, ``boto3.Session().client`` or a botocore session) has its requests answered in
this process by a real facepipe on ``data_dir``, with the real models: no server, no port, no
network. The answers come from the protocol handler the HTTP server uses, through the same
``before-send`` hook the command line's local mode uses (:class:`pipeline.cli.local.LocalTransport`),
so botocore parses them, raises ``ClientError`` and paginates exactly as against AWS.

- Any region works. Credentials are neither needed nor looked up: a Rekognition client created
  without explicit keys gets placeholder ones (so botocore never searches the environment, files
  or the instance metadata service), and its requests are not signed.
- Requests to other services (S3, ...) are left alone and go out as usual, or to moto when moto
  mocks them (facepipe answers Rekognition first, also inside ``moto.mock_aws``).
- Clients created before the block keep their endpoint; :meth:`InProcessRekognition.attach` routes
  one of them too (e.g. an application's module-level client). Clients answered in process go
  back to their own endpoint when the block ends.
- One block at a time per process; entering a second raises RuntimeError.
- The store is ``data_dir`` (kept after the block), or a temporary directory removed at the end:
  always the embedded (SQLite) store, even when ``$FACEPIPE_STORE`` names a PostgreSQL database,
  so an application's tests never write to a shared one.

The pytest plugin (:mod:`pipeline.testing.plugin`, installed with facepipe) gives the fixtures
``rekognition`` (this block around a test, on a fresh directory) and ``rekognition_client``.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import botocore
import botocore.session
from botocore.awsrequest import AWSPreparedRequest, AWSResponse

from pipeline.cli.local import LocalTransport

if TYPE_CHECKING:
    from pipeline.service import FacePipe

__all__ = ["InProcessRekognition", "rekognition"]

SERVICE = "rekognition"
"""The botocore service whose requests are answered in process."""

_ACTIVE_LOCK = threading.Lock()
_active: InProcessRekognition | None = None


ANSWERED_URL = "http://rekognition.facepipe.invalid/"
"""The URL a request answered in process carries afterwards (``.invalid`` never resolves)."""

PLACEHOLDER_KEY = "facepipe-in-process"
"""Access key id and secret given to Rekognition clients created without keys (never used: no signing)."""


class InProcessRekognition:
    """An active in-process facepipe: the service answering Rekognition clients, and its store.

    Made by :func:`rekognition`; ``data_dir`` is the store's directory.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._transport = LocalTransport(data_dir, embedded_store=True)
        self._handlers: list[tuple[str, Any]] = [
            (f"choose-signer.{SERVICE}", _unsigned),
            (f"before-send.{SERVICE}", self._answer),
        ]
        self._attached: list[Any] = []
        self._lock = threading.Lock()
        self._original_create_client = botocore.session.Session.create_client

    @property
    def service(self) -> FacePipe:
        """The facepipe answering the requests (``service.call("ListCollections", {})`` works too)."""
        return self._transport.facepipe()

    def client(self, region_name: str = "us-east-1", **kwargs: Any) -> Any:
        """A new boto3 Rekognition client (any region; facepipe has none), answered in process."""
        return boto3.client(SERVICE, region_name=region_name, **kwargs)

    def attach(self, client: Any) -> Any:
        """Answer ``client`` (a Rekognition client, e.g. one created before the block) in process; returns it."""
        name = client.meta.service_model.service_name
        if name != SERVICE:
            raise ValueError(f"attach() takes a Rekognition client, not a {name} client")
        for event, handler in self._handlers:
            client.meta.events.register_first(event, handler)
        with self._lock:
            self._attached.append(client)
        return client

    def _answer(self, request: AWSPreparedRequest, **kwargs: Any) -> AWSResponse:
        """before-send handler: the service's answer replaces the HTTP round trip.

        botocore still calls the other before-send handlers (it keeps the first answer); the
        request's URL is then set to one outside AWS, so that moto's handler leaves it alone
        instead of claiming a Rekognition request it does not implement.
        """
        response = self._transport(request, **kwargs)
        request.url = ANSWERED_URL
        return response

    def _start(self) -> None:
        self.service  # noqa: B018  (made now, so the application's threads share one service)
        original = self._original_create_client

        def create_client(
            session: botocore.session.Session, service_name: str, *args: Any, **kwargs: Any
        ) -> Any:
            if service_name != SERVICE:
                return original(session, service_name, *args, **kwargs)
            if len(args) < 6 and kwargs.get("aws_access_key_id") is None:  # keys not given explicitly
                kwargs["aws_access_key_id"] = kwargs["aws_secret_access_key"] = PLACEHOLDER_KEY
                kwargs["aws_session_token"] = None
            return self.attach(original(session, service_name, *args, **kwargs))

        botocore.session.Session.create_client = create_client

    def _stop(self) -> None:
        botocore.session.Session.create_client = self._original_create_client
        with self._lock:
            attached, self._attached = self._attached, []
        for client in attached:
            for event, handler in self._handlers:
                client.meta.events.unregister(event, handler)
        self._transport.close()


def _unsigned(**_: Any) -> Any:
    """choose-signer handler: requests answered in process are not signed."""
    return botocore.UNSIGNED


@contextmanager
def rekognition(data_dir: str | Path | None = None) -> Iterator[InProcessRekognition]:
    """Answer the Rekognition clients created inside the block with a real facepipe, in process.

    data_dir: the store's directory (created if needed, kept afterwards); None: a temporary
    directory, removed when the block ends. See the module docstring for what is intercepted.
    """
    global _active
    temporary = data_dir is None
    with _ACTIVE_LOCK:
        if _active is not None:
            raise RuntimeError(
                f"an in-process facepipe is already active (data_dir {_active.data_dir}); blocks do not nest"
            )
        folder = Path(tempfile.mkdtemp(prefix="facepipe-test-")) if data_dir is None else Path(data_dir)
        fp = _active = InProcessRekognition(folder.expanduser())
    try:
        fp._start()
        yield fp
    finally:
        fp._stop()
        with _ACTIVE_LOCK:
            _active = None
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
