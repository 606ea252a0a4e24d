"""A small photo application written against Amazon Rekognition with boto3, nothing facepipe-specific.

It keeps one face collection, indexes photos into it, enrolls people as Rekognition users and
tells who is in a new photo. Pointed at AWS it runs on AWS; pointed at facepipe (the endpoint
setting, e.g. ``AWS_ENDPOINT_URL_REKOGNITION=http://127.0.0.1:8080``) it runs on facepipe; its
tests run it in process with facepipe's ``rekognition`` pytest fixture.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

MATCH_THRESHOLD = 80.0
"""Rekognition's default similarity threshold for a match (0-100)."""


@dataclass(frozen=True)
class Sighting:
    """A known person found in a photo, with Rekognition's similarity (0-100)."""

    person: str
    similarity: float


class PhotoApp:
    """Photos and people in one Rekognition collection.

    client: a boto3 Rekognition client; None creates one the usual way (region, credentials and
    endpoint from the environment and the AWS config files).
    """

    def __init__(self, collection_id: str = "photo-app", client: Any = None) -> None:
        self.collection_id = collection_id
        self.client = client if client is not None else boto3.client("rekognition")

    def setup(self) -> None:
        """Create the collection unless it exists."""
        with contextlib.suppress(self.client.exceptions.ResourceAlreadyExistsException):
            self.client.create_collection(CollectionId=self.collection_id)

    def add_photo(self, path: Path) -> list[str]:
        """Index every face of the photo; returns their FaceIds, largest face first."""
        response = self.client.index_faces(
            CollectionId=self.collection_id,
            Image={"Bytes": path.read_bytes()},
            ExternalImageId=path.name,
            DetectionAttributes=["DEFAULT"],
        )
        records = sorted(
            response["FaceRecords"],
            key=lambda record: (
                record["Face"]["BoundingBox"]["Width"] * record["Face"]["BoundingBox"]["Height"]
            ),
            reverse=True,
        )
        return [record["Face"]["FaceId"] for record in records]

    def enroll(self, person: str, face_ids: list[str]) -> list[str]:
        """Make ``person`` a user (if new) and associate the faces; returns the faces associated now."""
        with contextlib.suppress(self.client.exceptions.ConflictException):
            self.client.create_user(CollectionId=self.collection_id, UserId=person)
        response = self.client.associate_faces(
            CollectionId=self.collection_id, UserId=person, FaceIds=face_ids
        )
        return [face["FaceId"] for face in response["AssociatedFaces"]]

    def who_is_this(self, photo: bytes) -> Sighting | None:
        """The enrolled person whose face is the largest in the photo, or None (unknown, or no face)."""
        response = self.client.search_users_by_image(
            CollectionId=self.collection_id,
            Image={"Bytes": photo},
            UserMatchThreshold=MATCH_THRESHOLD,
            MaxUsers=1,
        )
        matches = response["UserMatches"]
        if not matches:
            return None
        return Sighting(matches[0]["User"]["UserId"], matches[0]["Similarity"])

    def photos_of(self, person: str) -> list[str]:
        """Names of the photos holding a face of ``person`` (every page of ListFaces)."""
        names: set[str] = set()
        pages = self.client.get_paginator("list_faces").paginate(
            CollectionId=self.collection_id, UserId=person
        )
        for page in pages:
            names.update(face["ExternalImageId"] for face in page["Faces"])
        return sorted(names)

    def people(self) -> list[str]:
        """Every enrolled person."""
        pages = self.client.get_paginator("list_users").paginate(CollectionId=self.collection_id)
        return [user["UserId"] for page in pages for user in page["Users"]]
