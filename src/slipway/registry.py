"""The model registry: register, look up, load, promote, roll back, archive, audit, verify.

A version is one fitted pipeline saved as an immutable content-addressed artifact, plus a row
of metadata. Versions are numbered per model, never reused and never overwritten; aliases
(``production``, ``candidate``) point at versions and remember where they pointed before.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pandas as pd
import sqlalchemy as sa

from slipway import artifacts as art
from slipway import backends
from slipway.config import Settings
from slipway.contract import Unseen
from slipway.exceptions import (
    IncompatibleEnvironment,
    InvalidModel,
    ModelNotFound,
    RegistryConflict,
    SlipwayWarning,
    VersionMismatchWarning,
)
from slipway.predict import Model
from slipway.profile import from_parquet_bytes, to_parquet_bytes
from slipway.provenance import current_user, library_versions, minor
from slipway.registration import describe
from slipway.store import Store
from slipway.store.schema import (
    alias_history,
    aliases,
    audit_events,
    model_versions,
    models,
    utcnow,
)
from slipway.versions import (
    DEFAULT_ALIAS,
    ArtifactCheck,
    AuditEvent,
    ModelSummary,
    ModelVersion,
    check_alias,
    check_name,
    parse_ref,
)


class Registry:
    """Models, versions and aliases in the metadata store, artifacts on disk.

    Build one from :class:`~slipway.config.Settings`; every method is safe to call from
    several processes at once (SQLite serializes writers, PostgreSQL locks rows).
    """

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.store = store or Store(self.settings.resolved_database_url)
        self.artifacts = art.ArtifactStore(self.settings.artifacts_dir)

    # -- registration ----------------------------------------------------------------------

    def register(
        self,
        pipeline: Any,
        name: str,
        X_train: Any,
        y_train: Any = None,
        *,
        X_val: Any = None,
        y_val: Any = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        format: art.Format = "joblib",
        cv: int | None = None,
        unseen: Unseen = "reject",
        band: float = 10.0,
        abs_limit: float = 1e12,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        alias: str | None = None,
        seed: int = 0,
        onnx: bool = True,
        features: Sequence[Any] | None = None,
        at: str | None = None,
        record_events: bool | str = False,
    ) -> ModelVersion:
        """Save a fitted pipeline as the next version of ``name`` and return that version.

        Learns the input contract and a reference profile from ``X_train``, scores
        ``X_val``/``y_val`` when given, runs ``cv``-fold cross-validation when asked, and
        records provenance. ``alias`` promotes the new version straight away. With ``onnx``
        (and the ``onnx`` extra installed) the pipeline is also converted to ONNX and kept as
        the fast serving backend when it matches scikit-learn on the reference sample.

        ``features`` (feature sets and row features of :mod:`slipway.features`) records the
        definitions and their code hash: loading the version then computes them for every
        input, which carries raw fields, entity keys and the time field ``at`` (default: the
        sources' time column). ``record_events`` makes served requests events of their source
        (``True`` for the only source, or its name).
        """
        check_name(name)
        if format not in art.FORMATS:
            raise InvalidModel(f"format must be one of {', '.join(art.FORMATS)}, not {format!r}")
        desc = describe(
            pipeline,
            X_train,
            y_train,
            X_val=X_val,
            y_val=y_val,
            cv=cv,
            unseen=unseen,
            band=band,
            abs_limit=abs_limit,
            bounds=bounds,
            sample_size=self.settings.profile_sample_rows,
            seed=seed,
            onnx=onnx,
            features=features,
            at=at,
            record_events=record_events,
        )
        meta = desc.meta
        if "features" in meta:
            self._save_sources(meta["features"]["definitions"]["sources"])
        if format == "skops":
            meta["env"] = library_versions("skops")
        payload = art.dump_model(pipeline, format)
        untrusted = art.untrusted_types(payload, format, self.settings.trusted_types)
        if untrusted:
            meta["untrusted_types"] = untrusted
            warnings.warn(
                f"{name}: the skops artifact holds types outside the trusted list "
                f"({', '.join(untrusted)}); loading will refuse them until they are listed in "
                "SLIPWAY_TRUSTED_TYPES.",
                SlipwayWarning,
                stacklevel=2,
            )
        sha = self.artifacts.put(payload)
        meta["artifacts"] = {
            "model": sha,
            "profile": self.artifacts.put(json.dumps(desc.profile, sort_keys=True).encode()),
            "sample": self.artifacts.put(to_parquet_bytes(desc.sample)),
            "reference_predictions": self.artifacts.put(to_parquet_bytes(desc.reference)),
        }
        if desc.onnx is not None:
            meta["artifacts"]["onnx"] = self.artifacts.put(desc.onnx)
        actor = current_user(self.settings.user)
        with self.store.write() as conn:
            version = _next_version(conn, self.store.dialect, name)
            conn.execute(
                model_versions.insert().values(
                    model_name=name,
                    version=version,
                    sha256=sha,
                    format=format,
                    status="active",
                    created_at=utcnow(),
                    created_by=actor,
                    description=description,
                    tags=dict(tags or {}),
                    meta=meta,
                )
            )
            _audit(conn, actor, "register", name, version=version, detail={"sha256": sha})
        if alias:
            self.promote(name, version, alias=alias)
        return self.get(f"{name}:{version}")

    # -- lookup ----------------------------------------------------------------------------

    def resolve(self, ref: str) -> tuple[str, int]:
        """Turn a reference into (name, version): ``name`` means production, else latest."""
        name, version, alias = parse_ref(ref)
        with self.store.read() as conn:
            if not conn.execute(sa.select(models.c.name).where(models.c.name == name)).first():
                raise ModelNotFound(f"No model named {name!r}.{_known(conn)}")
            if version is not None:
                return name, version
            if alias is not None:
                row = conn.execute(
                    sa.select(aliases.c.version).where(
                        aliases.c.model_name == name, aliases.c.alias == alias
                    )
                ).first()
                if row is None:
                    have = _alias_map(conn, name)
                    hint = f" (it has {_fmt_aliases(have)})" if have else " (it has no aliases)"
                    raise ModelNotFound(f"Model {name!r} has no alias {alias!r}{hint}.")
                return name, int(row.version)
            row = conn.execute(
                sa.select(aliases.c.version).where(
                    aliases.c.model_name == name, aliases.c.alias == DEFAULT_ALIAS
                )
            ).first()
            if row is not None:
                return name, int(row.version)
            latest = conn.execute(
                sa.select(sa.func.max(model_versions.c.version)).where(
                    model_versions.c.model_name == name, model_versions.c.status == "active"
                )
            ).scalar()
            if latest is None:
                raise ModelNotFound(f"Model {name!r} has no active versions.")
            return name, int(latest)

    def get(self, ref: str) -> ModelVersion:
        """The version a reference points at."""
        name, version = self.resolve(ref)
        with self.store.read() as conn:
            row = conn.execute(
                sa.select(model_versions).where(
                    model_versions.c.model_name == name, model_versions.c.version == version
                )
            ).first()
            if row is None:
                latest = conn.execute(
                    sa.select(models.c.latest_version).where(models.c.name == name)
                ).scalar()
                raise ModelNotFound(
                    f"Model {name!r} has no version {version} (latest is {latest})."
                )
            return _version(row, _alias_map(conn, name))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        check_name(name)
        with self.store.read() as conn:
            rows = conn.execute(
                sa.select(model_versions)
                .where(model_versions.c.model_name == name)
                .order_by(model_versions.c.version)
            ).all()
            if not rows:
                raise ModelNotFound(f"No model named {name!r}.{_known(conn)}")
            amap = _alias_map(conn, name)
        return [_version(r, amap) for r in rows]

    def models(self) -> list[ModelSummary]:
        """All models with their version counts and aliases, by name."""
        with self.store.read() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(model_versions.c.model_name, sa.func.count()).group_by(
                        model_versions.c.model_name
                    )
                ).all()
            )
            amaps: dict[str, dict[str, int]] = {}
            for r in conn.execute(sa.select(aliases)).all():
                amaps.setdefault(r.model_name, {})[r.alias] = r.version
            rows = conn.execute(sa.select(models).order_by(models.c.name)).all()
        return [
            ModelSummary(
                r.name, r.created_at, r.latest_version, counts.get(r.name, 0), amaps.get(r.name, {})
            )
            for r in rows
        ]

    def load(
        self,
        ref: str,
        *,
        backend: Literal["sklearn", "auto"] = "sklearn",
        record_events: bool = False,
    ) -> Model:
        """Verify a version's artifact against its recorded sha256, then deserialize it.

        ``backend="auto"`` also loads the version's ONNX graph when one was accepted at
        registration and onnxruntime is installed (the service does); the default answers with
        scikit-learn alone, so results are bit-identical to the pipeline's. A version with
        features gets its enrichment step; its feature code is checked against the recorded
        hash first (FeatureSkew, or a warning with ``SLIPWAY_FEATURE_SKEW=warn``).
        ``record_events`` (the service) records requests as events when the version asks.
        """
        mv = self.get(ref)
        self._check_env(mv)
        enricher = None
        if "features" in mv.meta:
            from slipway.features.versions import enricher as make_enricher

            enricher = make_enricher(
                mv, self.store, skew=self.settings.feature_skew, record=record_events
            )
        data = self.artifacts.get(mv.sha256)  # raises before any deserialization
        pipeline = art.load_model(
            data,
            mv.format,  # type: ignore[arg-type]
            trusted=self.settings.trusted_types,
            source=str(self.artifacts.path(mv.sha256)),
        )
        graph = mv.meta.get("artifacts", {}).get("onnx")
        if backend == "auto" and graph and backends.runtime_available():
            onnx = backends.OnnxBackend(self.artifacts.get(graph), mv.contract)
            return Model(pipeline, mv, onnx, enricher)
        return Model(pipeline, mv, enricher=enricher)

    def profile(self, mv: ModelVersion) -> dict[str, Any]:
        """The reference profile stored with a version."""
        result: dict[str, Any] = json.loads(self.artifacts.get(mv.meta["artifacts"]["profile"]))
        return result

    def reference_sample(self, mv: ModelVersion) -> pd.DataFrame:
        """The bounded random sample of training rows stored with a version."""
        return from_parquet_bytes(self.artifacts.get(mv.meta["artifacts"]["sample"]))

    def reference_predictions(self, mv: ModelVersion) -> pd.DataFrame:
        """The version's predictions on its validation data (label, ``proba:<class>`` / value)."""
        sha = mv.meta["artifacts"]["reference_predictions"]
        return from_parquet_bytes(self.artifacts.get(sha))

    # -- aliases ---------------------------------------------------------------------------

    def promote(self, name: str, version: int, *, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically) and record the move."""
        check_alias(alias)
        actor = current_user(self.settings.user)
        with self.store.write() as conn:
            status = self._status(conn, name, version)
            if status != "active":
                raise RegistryConflict(
                    f"Version {version} of {name!r} is {status}; only active versions can be "
                    "promoted."
                )
            current = _lock_alias(conn, name, alias)
            if current != version:
                _set_alias(conn, self.store.dialect, name, alias, version)
                conn.execute(
                    alias_history.insert().values(
                        model_name=name, alias=alias, version=version, set_at=utcnow()
                    )
                )
                _audit(
                    conn,
                    actor,
                    "promote",
                    name,
                    version=version,
                    alias=alias,
                    from_version=current,
                    to_version=version,
                )
        return self.get(f"{name}:{version}")

    def rollback(self, name: str, *, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Move ``alias`` back to the version it held before its latest move."""
        check_alias(alias)
        actor = current_user(self.settings.user)
        with self.store.write() as conn:
            self._status(conn, name, None)
            current = _lock_alias(conn, name, alias)
            history = conn.execute(
                sa.select(alias_history.c.id, alias_history.c.version)
                .where(
                    alias_history.c.model_name == name,
                    alias_history.c.alias == alias,
                    alias_history.c.rolled_back == sa.false(),
                )
                .order_by(alias_history.c.id.desc())
                .limit(2)
            ).all()
            if current is None:
                raise RegistryConflict(f"Model {name!r} has no alias {alias!r} to roll back.")
            if len(history) < 2:
                raise RegistryConflict(
                    f"Alias {alias!r} of {name!r} has no earlier version to roll back to "
                    f"(it has only ever pointed at version {current})."
                )
            target = int(history[1].version)
            status = self._status(conn, name, target)
            if status != "active":
                raise RegistryConflict(
                    f"Alias {alias!r} of {name!r} would roll back to version {target}, which "
                    f"is {status}; promote a version explicitly instead."
                )
            conn.execute(
                alias_history.update()
                .where(alias_history.c.id == history[0].id)
                .values(rolled_back=True)
            )
            _set_alias(conn, self.store.dialect, name, alias, target)
            _audit(
                conn,
                actor,
                "rollback",
                name,
                version=target,
                alias=alias,
                from_version=current,
                to_version=target,
            )
        return self.get(f"{name}:{target}")

    def archive(self, name: str, version: int) -> ModelVersion:
        """Retire a version: still loadable as ``name:N``, never promoted or picked as latest."""
        actor = current_user(self.settings.user)
        with self.store.write() as conn:
            status = self._status(conn, name, version)
            held = [a for a, v in _alias_map(conn, name).items() if v == version]
            if held:
                raise RegistryConflict(
                    f"Version {version} of {name!r} is held by alias(es) {', '.join(held)}; "
                    "promote another version first."
                )
            if status != "archived":
                conn.execute(
                    model_versions.update()
                    .where(model_versions.c.model_name == name, model_versions.c.version == version)
                    .values(status="archived")
                )
                _audit(conn, actor, "archive", name, version=version)
        return self.get(f"{name}:{version}")

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for one model."""
        with self.store.read() as conn:
            return _alias_map(conn, name)

    # -- audit and integrity ---------------------------------------------------------------

    def audit(self, name: str | None = None, *, limit: int = 100) -> list[AuditEvent]:
        """Registry changes, newest first."""
        query = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if name is not None:
            query = query.where(audit_events.c.model_name == name)
        with self.store.read() as conn:
            rows = conn.execute(query).all()
        return [
            AuditEvent(
                r.at,
                r.actor,
                r.action,
                r.model_name,
                r.version,
                r.alias,
                r.from_version,
                r.to_version,
                r.detail,
            )
            for r in rows
        ]

    def verify(self, name: str | None = None) -> list[ArtifactCheck]:
        """Re-hash every artifact of every version (of one model, or all)."""
        names = [name] if name else [m.name for m in self.models()]
        checks = []
        for model_name in names:
            for mv in self.versions(model_name):
                for role, sha in mv.meta.get("artifacts", {"model": mv.sha256}).items():
                    checks.append(
                        ArtifactCheck(model_name, mv.version, role, sha, self.artifacts.check(sha))
                    )
        return checks

    # -- internals -------------------------------------------------------------------------

    def _save_sources(self, sources: Mapping[str, Any]) -> None:
        from slipway.store import features as feature_store

        for spec in sources.values():
            try:
                feature_store.save_source(self.store, spec)
            except ValueError as exc:
                raise RegistryConflict(
                    f"Cannot register these features: {exc}. Rename the source or use the "
                    "recorded columns."
                ) from None

    def _status(self, conn: sa.Connection, name: str, version: int | None) -> str:
        if conn.execute(sa.select(models.c.name).where(models.c.name == name)).first() is None:
            raise ModelNotFound(f"No model named {name!r}.{_known(conn)}")
        if version is None:
            return "active"
        row = conn.execute(
            sa.select(model_versions.c.status).where(
                model_versions.c.model_name == name, model_versions.c.version == version
            )
        ).first()
        if row is None:
            latest = conn.execute(
                sa.select(models.c.latest_version).where(models.c.name == name)
            ).scalar()
            raise ModelNotFound(f"Model {name!r} has no version {version} (latest is {latest}).")
        return str(row.status)

    def _check_env(self, mv: ModelVersion) -> None:
        saved = mv.meta.get("env", {}).get("scikit-learn")
        running = library_versions().get("scikit-learn")
        if not saved or not running or minor(saved) == minor(running):
            return
        message = (
            f"{mv.ref} was saved with scikit-learn {saved} and is being loaded with "
            f"{running}; predictions may differ."
        )
        if self.settings.on_version_mismatch == "refuse":
            raise IncompatibleEnvironment(
                message + " Refusing (SLIPWAY_ON_VERSION_MISMATCH=refuse): install "
                f"scikit-learn=={saved} or register the model again."
            )
        warnings.warn(message, VersionMismatchWarning, stacklevel=3)


# -- helpers -------------------------------------------------------------------------------


def _next_version(conn: sa.Connection, dialect: str, name: str) -> int:
    insert = _dialect_insert(dialect)(models).values(
        name=name, created_at=utcnow(), latest_version=0
    )
    conn.execute(insert.on_conflict_do_nothing(index_elements=["name"]))
    # The UPDATE takes the row lock: a concurrent registration waits, then sees our number.
    return int(
        conn.execute(
            models.update()
            .where(models.c.name == name)
            .values(latest_version=models.c.latest_version + 1)
            .returning(models.c.latest_version)
        ).scalar_one()
    )


def _dialect_insert(dialect: str) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _lock_alias(conn: sa.Connection, name: str, alias: str) -> int | None:
    row = conn.execute(
        sa.select(aliases.c.version)
        .where(aliases.c.model_name == name, aliases.c.alias == alias)
        .with_for_update()
    ).first()
    return None if row is None else int(row.version)


def _set_alias(conn: sa.Connection, dialect: str, name: str, alias: str, version: int) -> None:
    now = utcnow()
    stmt = _dialect_insert(dialect)(aliases).values(
        model_name=name, alias=alias, version=version, updated_at=now
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["model_name", "alias"], set_={"version": version, "updated_at": now}
        )
    )


def _alias_map(conn: sa.Connection, name: str) -> dict[str, int]:
    rows = conn.execute(
        sa.select(aliases.c.alias, aliases.c.version)
        .where(aliases.c.model_name == name)
        .order_by(aliases.c.alias)
    ).all()
    return {r.alias: int(r.version) for r in rows}


def _fmt_aliases(amap: Mapping[str, int]) -> str:
    return ", ".join(f"{a} -> {v}" for a, v in amap.items())


def _known(conn: sa.Connection) -> str:
    names = conn.execute(sa.select(models.c.name).order_by(models.c.name).limit(10)).scalars()
    listed = ", ".join(names)
    return f" Known models: {listed}." if listed else " The registry is empty."


def _version(row: Any, amap: Mapping[str, int]) -> ModelVersion:
    return ModelVersion(
        name=row.model_name,
        version=int(row.version),
        sha256=row.sha256,
        format=row.format,
        status=row.status,
        created_at=row.created_at,
        created_by=row.created_by,
        description=row.description,
        tags=dict(row.tags or {}),
        meta=dict(row.meta),
        aliases=tuple(a for a, v in amap.items() if v == row.version),
    )


def _audit(
    conn: sa.Connection,
    actor: str,
    action: str,
    name: str | None,
    *,
    version: int | None = None,
    alias: str | None = None,
    from_version: int | None = None,
    to_version: int | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        audit_events.insert().values(
            at=utcnow(),
            actor=actor,
            action=action,
            model_name=name,
            version=version,
            alias=alias,
            from_version=from_version,
            to_version=to_version,
            detail=dict(detail or {}),
        )
    )
