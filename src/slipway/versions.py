"""What the registry hands out: versions, model summaries, audit events, artifact checks.

Also the grammar of references: ``name``, ``name:3`` or ``name@alias``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slipway.contract import Contract
from slipway.exceptions import InvalidReference

DEFAULT_ALIAS = "production"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
_REF = re.compile(r"^(?P<name>[^:@]+)(?::(?P<version>[^:@]+)|@(?P<alias>[^:@]+))?$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version: who, when, what, how well, and where its artifacts are."""

    name: str
    version: int
    sha256: str
    format: str
    status: str
    created_at: datetime
    created_by: str
    description: str
    tags: dict[str, str]
    meta: dict[str, Any]
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        """``name:version``, a reference that never moves."""
        return f"{self.name}:{self.version}"

    @property
    def metrics(self) -> dict[str, float]:
        """Metrics on the validation data given at registration (empty without it)."""
        return dict(self.meta.get("metrics", {}))

    @property
    def task(self) -> str:
        """``"classification"`` or ``"regression"``."""
        return str(self.meta["task"])

    @property
    def classes(self) -> list[Any] | None:
        """Class labels of a classifier, in the pipeline's order."""
        return self.meta.get("classes")

    @property
    def feature_names(self) -> list[str]:
        """Input fields in training order."""
        return list(self.meta["feature_names"])

    def artifact_size(self, sha256: str) -> int | None:
        """The byte size of one of the version's artifacts, as recorded at registration (None
        for versions registered before sizes were recorded)."""
        size = self.meta.get("artifact_sizes", {}).get(sha256)
        return None if size is None else int(size)

    @property
    def contract(self) -> Contract:
        """The input contract learned from the training data."""
        return Contract.from_dict(self.meta["contract"])

    @property
    def request_contract(self) -> Contract:
        """What a request carries: the contract, or for a version with features its raw
        fields, entity keys and time (the features are computed)."""
        features = self.meta.get("features")
        if features is None:
            return self.contract
        return Contract.from_dict(features["request_contract"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, as printed by ``slipway models show --json``."""
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "sha256": self.sha256,
            "format": self.format,
            "status": self.status,
            "aliases": list(self.aliases),
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "description": self.description,
            "tags": self.tags,
            **self.meta,
        }


@dataclass(frozen=True)
class ModelSummary:
    """A model and where its versions and aliases stand."""

    name: str
    created_at: datetime
    latest_version: int
    versions: int
    aliases: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, as printed by ``slipway models list --json``."""
        return {
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "latest_version": self.latest_version,
            "versions": self.versions,
            "aliases": self.aliases,
        }


@dataclass(frozen=True)
class AuditEvent:
    """One change to the registry: who did what, when, from which version to which."""

    at: datetime
    actor: str
    action: str
    model: str | None
    version: int | None
    alias: str | None
    from_version: int | None
    to_version: int | None
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {**self.__dict__, "at": self.at.isoformat()}


@dataclass(frozen=True)
class ArtifactCheck:
    """The result of checking one artifact of one version: re-hashed, and for the model also
    loaded in a fresh interpreter."""

    model: str
    version: int
    role: str
    sha256: str
    status: str  # "ok" | "missing" | "corrupted" | "unloadable"
    detail: str = ""  # what is wrong, when it is not ok


def parse_ref(ref: str) -> tuple[str, int | None, str | None]:
    """Split ``name``, ``name:3`` or ``name@alias`` into (name, version, alias)."""
    m = _REF.match(ref.strip())
    if not m or not NAME_PATTERN.match(m["name"]):
        raise InvalidReference(
            f"{ref!r} is not a model reference; use NAME, NAME:VERSION or NAME@ALIAS "
            "(e.g. fraud, fraud:3, fraud@production)."
        )
    version = None
    if m["version"] is not None:
        if not m["version"].isdigit() or int(m["version"]) < 1:
            raise InvalidReference(f"{ref!r}: the version must be a positive whole number.")
        version = int(m["version"])
    return m["name"], version, m["alias"]


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidReference(
            f"{name!r} is not a valid model name: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit, at most 100 characters."
        )


def check_alias(alias: str) -> None:
    if not _ALIAS.match(alias):
        raise InvalidReference(
            f"{alias!r} is not a valid alias: use lower-case letters, digits, '_' or '-', "
            "starting with a letter."
        )
