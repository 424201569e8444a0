"""``python -m processor members SEGMENT --csv [-o FILE]``: the members CSV export, streamed.

The API streams ``GET /sites/{site}/segments/{segment}/members.csv`` (docs/api.md); this copies it
in chunks to stdout or to FILE, never holding it. A download the worker cut short (a worker or
the partitions changed mid-way) is an error (exit 3): with ``-o`` nothing is left at FILE (the
bytes go to a temporary file beside it, renamed only once complete); on stdout the error follows
what was written.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from processor.admin_client import AdminClient, seg
from processor.errors import ProcessorError

CHUNK = 64 * 1024


def _copy(client: AdminClient, path: str, out: BinaryIO) -> int:
    """Copy the body of ``GET path`` to ``out``; the number of bytes. ProcessorError for a refusal
    (its code and message), an unreachable API, or a body cut short."""
    req = urllib.request.Request(client.base_url + path, headers={"Authorization": f"Bearer {client.token}"})
    n = 0
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            while True:
                chunk = r.read(CHUNK)
                if not chunk:
                    return n
                out.write(chunk)
                n += len(chunk)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            err = json.loads(raw)
        except ValueError:
            err = {"code": f"HTTP_{e.code}", "message": raw.decode(errors="replace")}
        raise ProcessorError(err.get("code", f"HTTP_{e.code}"), err.get("message", ""),
                             err.get("path", "")) from None
    except urllib.error.URLError as e:
        raise ProcessorError("API_UNREACHABLE", f"{client.base_url}: {e.reason}; is a worker running? "
                             "(set API_URL)") from None
    except (http.client.IncompleteRead, ConnectionError, http.client.HTTPException) as e:
        raise ProcessorError("API_UNREACHABLE", f"the export stopped after {n} bytes ({type(e).__name__}): a "
                             "worker failed or partitions moved during it; export again") from None


def export_csv(client: AdminClient, site: str, segment: str, output: Path | None) -> int:
    """Stream the segment's members CSV to ``output`` (stdout when None); the bytes written."""
    path = f"/sites/{seg(site)}/segments/{seg(segment)}/members.csv"
    if output is None:
        n = _copy(client, path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return n
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent or Path("."))
    try:
        with os.fdopen(fd, "wb") as f:
            n = _copy(client, path, f)
        os.replace(tmp, output)
        return n
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
