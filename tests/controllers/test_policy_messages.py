"""The ImagePolicy Ready messages of both Flux releases, and refs seeded from images.

Pure functions, so every form is checked here; the real API server tests
(``test_flux_compatibility.py``) show them in status.
"""

from __future__ import annotations

import pytest

from imagereflector.api.imagepolicy import ImageRef
from imagereflector.controllers.imagepolicy import (
    compose_ready_message,
    compose_v1_ready_message,
    ref_from_image,
)

IMG = "ghcr.io/org/app"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64


@pytest.mark.parametrize(("latest", "previous", "message"), [
    (ImageRef(name=IMG, tag="1.2.3"), None, f"Latest image tag for {IMG} resolved to 1.2.3"),
    (ImageRef(name=IMG, tag="1.2.3"), ImageRef(name=IMG, tag="1.2.2"),
     f"Latest image tag for {IMG} resolved to 1.2.3 (previously {IMG}:1.2.2)"),
    (ImageRef(name=IMG, tag="1.2.3", digest=D1), ImageRef(name=IMG, tag="1.2.2", digest=D2),
     f"Latest image tag for {IMG} resolved to 1.2.3 with digest {D1} "
     f"(previously {IMG}:1.2.2@{D2})"),
    # The same tag re-pushed: only the digest moved, and that is a change too.
    (ImageRef(name=IMG, tag="latest", digest=D1), ImageRef(name=IMG, tag="latest", digest=D2),
     f"Latest image tag for {IMG} resolved to latest with digest {D1} "
     f"(previously {IMG}:latest@{D2})"),
    # A previous equal to the latest is no previous (an absent digest is "").
    (ImageRef(name=IMG, tag="1.2.3"), ImageRef(name=IMG, tag="1.2.3", digest=""),
     f"Latest image tag for {IMG} resolved to 1.2.3"),
], ids=["first", "previously", "digests", "repushed", "same"])
def test_flux_v1_2_ready_message(latest: ImageRef, previous: ImageRef | None,
                                 message: str) -> None:
    assert compose_v1_ready_message(latest, previous) == message


def test_flux_v0_31_ready_message() -> None:
    assert compose_ready_message(IMG, "1.2.3", "") == (
        f"Latest image tag for '{IMG}' resolved to 1.2.3")
    assert compose_ready_message(IMG, "1.2.3", "1.2.3") == (
        f"Latest image tag for '{IMG}' resolved to 1.2.3")
    assert compose_ready_message(IMG, "1.2.3", "1.2.2") == (
        f"Latest image tag for '{IMG}' updated from 1.2.2 to 1.2.3")


@pytest.mark.parametrize(("image", "ref"), [
    (f"{IMG}:1.2.3", ImageRef(name=IMG, tag="1.2.3")),
    ("localhost:5000/app:v1", ImageRef(name="localhost:5000/app", tag="v1")),  # last ':'
    ("", None),
], ids=["plain", "port", "empty"])
def test_refs_are_seeded_from_images_as_flux_v0_35_does(image: str,
                                                        ref: ImageRef | None) -> None:
    assert ref_from_image(image) == ref
    if ref is not None:
        assert ref.image() == image == str(ref)
