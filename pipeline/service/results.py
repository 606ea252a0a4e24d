"""What the service's cores return: frozen dataclasses, no Rekognition JSON.

The operation handlers turn these into responses with pipeline.service.responses (the one place
the Rekognition shapes are written). Similarities and confidences are 0-100; boxes are ratios of
the image's width and height.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.service.selection import FaceChoice
from pipeline.store import FaceRow, UserRow
from pipeline.types import BoundingBox, DetectedFace

_new = object.__new__


@dataclass(frozen=True)
class Face:
    """A face stored in a collection (Rekognition's Face): ``confidence`` is the detector's, 0-100;
    ``user_id`` the user it is associated with, if any."""

    face_id: str
    image_id: str
    external_image_id: str | None
    bounding_box: BoundingBox
    confidence: float
    user_id: str | None = None

    @classmethod
    def of(cls, row: FaceRow) -> Face:
        """The face a store row describes.

        Built by filling the two frozen instances' fields directly (what their ``__init__`` does
        through object.__setattr__, one call a field): a ListFaces page or a search holds up to
        4,096 faces, and this takes about a third of the time of the plain build (0.33-0.38x,
        measured on AMD EPYC Zen 4; a test checks the two are equal).
        """
        box = _new(BoundingBox)
        fields = box.__dict__
        fields["left"], fields["top"] = row.box_left, row.box_top
        fields["width"], fields["height"] = row.box_width, row.box_height
        face = _new(cls)
        fields = face.__dict__
        fields["face_id"], fields["image_id"] = row.face_id, row.image_id
        fields["external_image_id"], fields["bounding_box"] = row.external_image_id, box
        fields["confidence"], fields["user_id"] = row.confidence, row.user_id
        return face


def user_status(face_count: int) -> str:
    """UserStatus: CREATED for a user without faces, ACTIVE otherwise (operations are synchronous)."""
    return "ACTIVE" if face_count > 0 else "CREATED"


@dataclass(frozen=True)
class User:
    """A user of a collection with ``face_count`` associated faces."""

    user_id: str
    face_count: int

    @property
    def status(self) -> str:
        """UserStatus (see :func:`user_status`)."""
        return user_status(self.face_count)

    @classmethod
    def of(cls, row: UserRow) -> User:
        """The user a store row describes."""
        return cls(row.user_id, row.face_count)


# faces ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class IndexedFace:
    """A face of an indexed image: as stored (``face``) and as detected (``detected``)."""

    face: Face
    detected: DetectedFace


@dataclass(frozen=True)
class IndexedImage:
    """What indexing one image did: faces stored (largest first; a re-indexed face is the one
    already stored), faces left out with their reasons, the collection's model version and the
    FaceDetail attributes asked for."""

    faces: list[IndexedFace]
    unindexed: list[FaceChoice]
    model_version: str
    detection_attributes: tuple[str, ...]


@dataclass(frozen=True)
class FacePage:
    """One page of a collection's faces in indexing order; ``next_token`` resumes after it."""

    faces: list[Face]
    model_version: str
    next_token: str | None


@dataclass(frozen=True)
class FaceFailure:
    """A FaceId an operation did not act on, with Rekognition's reason codes; ``user_id`` and
    ``confidence`` (the match Confidence, 0-100) where the operation reports them."""

    face_id: str
    reasons: tuple[str, ...]
    user_id: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class FaceDeletion:
    """DeleteFaces: the FaceIds deleted, in request order, and those refused."""

    deleted: list[str]
    unsuccessful: list[FaceFailure]


# users ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UserPage:
    """One page of a collection's users in UserId order; ``next_token`` resumes after it."""

    users: list[User]
    next_token: str | None


@dataclass(frozen=True)
class AssociationResult:
    """AssociateFaces (``associated``: FaceIds newly associated) or DisassociateFaces
    (``associated``: FaceIds removed from the user), the faces refused and the user's status after."""

    associated: list[str]
    unsuccessful: list[FaceFailure]
    user_status: str


# collections ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CollectionPage:
    """One page of collections in CollectionId order with their model versions."""

    collection_ids: list[str]
    model_versions: list[str]
    next_token: str | None


# searches ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceMatch:
    """A stored face that matched, with its Similarity (0-100)."""

    similarity: float
    face: Face


@dataclass(frozen=True)
class FaceSearch:
    """SearchFaces / SearchFacesByImage: matches best first. ``searched_face_id`` for a stored
    face, ``searched`` for the image's face that was searched."""

    matches: list[FaceMatch]
    model_version: str
    searched_face_id: str | None = None
    searched: DetectedFace | None = None


@dataclass(frozen=True)
class UserMatch:
    """A user whose centroid matched, with its Similarity (0-100)."""

    similarity: float
    user: User


@dataclass(frozen=True)
class UserSearch:
    """SearchUsers / SearchUsersByImage: matches best first and what was searched: a stored face
    (``searched_face_id``), a user (``searched_user_id``) or an image's face (``searched``, None
    when the image had no usable face; ``unsearched``: the image's other faces and why)."""

    matches: list[UserMatch]
    model_version: str
    searched_face_id: str | None = None
    searched_user_id: str | None = None
    searched: DetectedFace | None = None
    unsearched: list[FaceChoice] | None = None
