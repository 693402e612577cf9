"""The console's static files: read once from the package, served by name, never by path.

Only files that exist in ``static/`` (and ``static/vendor/``) at startup can be served, so a
request can never name anything else. Each answer carries an ETag; browsers revalidate it
(``no-cache``), so an upgrade shows at once and an unchanged file costs a 304.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

from slipway.exceptions import NotFound

_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
    ".LICENSE": "text/plain; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, media type and ETag."""

    content: bytes
    media_type: str
    etag: str


class Assets:
    """Every static file of the console, by its name under ``static/``."""

    def __init__(self) -> None:
        root = resources.files("slipway.console") / "static"
        self.files: dict[str, Asset] = {}
        for folder, prefix in ((root, ""), (root / "vendor", "vendor/")):
            for entry in folder.iterdir():
                suffix = "." + entry.name.rsplit(".", 1)[-1]
                if entry.is_file() and suffix in _TYPES:
                    data = entry.read_bytes()
                    tag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
                    self.files[prefix + entry.name] = Asset(data, _TYPES[suffix], tag)
        digest = hashlib.sha256()
        for name in sorted(self.files):
            digest.update(name.encode() + self.files[name].etag.encode())
        self.version = digest.hexdigest()[:12]

    def get(self, name: str) -> Asset:
        """The asset called ``name``; NotFound for anything else."""
        asset = self.files.get(name)
        if asset is None:
            raise NotFound(f"The console has no static file {name!r}.")
        return asset


ASSETS = Assets()
