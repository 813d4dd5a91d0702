"""Certificates of deletion lethe keeps: read one, verify it, write it to files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lethe.errors import LetheError, NotFound
from lethe.requests.certificate import (
    CertificateVerdict,
    load_certificate,
    verify_certificate,
    write_certificate,
)
from lethe.requests.records import requests_of
from lethe.requests.service import stored_certificate
from lethe.runtime import Runtime


def certificate_of(rt: Runtime, request_id: int) -> dict[str, Any] | None:
    """The signed certificate of a request: the one in the control store, else (for a
    request certified before certificates were kept there, migration 9) the file its
    record names. None when there is neither, or no such request."""
    document = stored_certificate(rt, request_id)
    if document is not None:
        return document
    try:
        path = requests_of(rt).get(request_id).certificate_path
    except NotFound:
        return None
    if path and Path(path).is_file():
        return load_certificate(Path(path))
    return None


def kept_certificate(rt: Runtime, request_id: int) -> dict[str, Any]:
    """The request's certificate; `NotFound` when lethe keeps none for it."""
    document = certificate_of(rt, request_id)
    if document is None:
        raise NotFound(f"no certificate for request {request_id}", path="--request")
    return document


def export_certificates(rt: Runtime, request_ids: Sequence[int],
                        out: Path) -> list[Path]:
    """Write each request's certificate as JSON evidence and HTML under `out`, after
    checking it verifies: a certificate that does not is refused, not copied on."""
    written: list[Path] = []
    for request_id in request_ids:
        document = kept_certificate(rt, request_id)
        verdict = verify_certificate(document, None)
        if not verdict.ok:
            raise LetheError(f"the kept certificate of request {request_id} does not "
                             f"verify: {verdict.reason}", path="--request")
        written += write_certificate(document, out, stem=f"request-{request_id}-certificate")
    return written


__all__ = ["CertificateVerdict", "certificate_of", "export_certificates",
           "kept_certificate"]
