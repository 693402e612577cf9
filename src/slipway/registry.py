"""The model registry: register, look up, load, promote, roll back, unalias, archive, delete,
audit, verify.

A version is one fitted pipeline saved as an immutable content-addressed artifact, plus a row
of metadata. Versions are numbered per model, never reused and never overwritten; aliases
(``production``, ``candidate``) point at versions and remember where they pointed before.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Literal

import pandas as pd

from slipway import artifacts as art
from slipway import backends, estimation, portability
from slipway.config import Settings
from slipway.contract import Unseen
from slipway.exceptions import (
    ConfigError,
    IncompatibleEnvironment,
    InvalidModel,
    RegistryConflict,
    SlipwayError,
    UntrustedArtifact,
    VersionMismatchWarning,
)
from slipway.predict import Model
from slipway.profile import from_parquet_bytes, to_parquet_bytes
from slipway.provenance import current_user, library_versions, minor
from slipway.store import Store, audit
from slipway.store import registry as tables
from slipway.store.registry import Deleted
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

logger = logging.getLogger("slipway.registry")


class Registry:
    """Models, versions and aliases in the metadata store, artifacts on disk.

    Build one from :class:`~slipway.config.Settings`; every method is safe to call from
    several processes at once (SQLite serializes writers, PostgreSQL locks rows).
    """

    def __init__(self, settings: Settings | None = None, *, store: Store | None = None) -> None:
        self.settings = settings or Settings.from_env()
        home = self.settings.home
        if home.exists() and not home.is_dir():
            raise ConfigError(
                f"SLIPWAY_HOME={home} is a file, not a directory; point SLIPWAY_HOME at a "
                "directory (it is created on first use if missing)."
            )
        self.store = store or Store(
            self.settings.resolved_database_url, create_dirs=not self.settings.database_url
        )
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
        unseen: Unseen | Mapping[str, Unseen] | None = None,
        band: float = 10.0,
        abs_limit: float = 1e12,
        bounds: Mapping[str, tuple[float | None, float | None]] | None = None,
        nullable: Iterable[str] | Mapping[str, bool] = (),
        ranges: Mapping[str, tuple[float | None, float | None]] | None = None,
        alias: str | None = None,
        seed: int = 0,
        onnx: bool = True,
        features: Sequence[Any] | None = None,
        at: str | None = None,
        record_events: bool | str = False,
        trusted: Sequence[str] = (),
    ) -> ModelVersion:
        """Save a fitted pipeline as the next version of ``name`` and return that version.

        Learns the input contract and a reference profile from ``X_train``, scores
        ``X_val``/``y_val`` when given, runs ``cv``-fold cross-validation when asked, and
        records provenance. ``alias`` promotes the new version straight away. With ``onnx``
        (and the ``onnx`` extra installed) the pipeline is also converted to ONNX and kept as
        the fast serving backend when it matches scikit-learn on the reference sample.

        The contract lets through what the pipeline handles (an imputer: nulls; a
        ``OneHotEncoder(handle_unknown="ignore")``: unseen categories, flagged) unless
        ``nullable`` (fields that take nulls), ``unseen`` (``"reject"``/``"flag"`` for all
        category fields, or ``{field: "flag"}``) or ``ranges`` (``{field: (low, high)}``;
        ``bounds`` is the older name) say otherwise; ``band`` and ``abs_limit`` set the
        plausibility band of numeric fields.

        A pipeline that refers to code outside the installed packages (a function in
        ``__main__`` or in a local module) is refused unless it loads in a fresh Python
        process of this environment, as ``slipway serve`` would load it.

        ``features`` (feature sets and row features of :mod:`slipway.features`) records the
        definitions and their code hash: loading the version then computes them for every
        input, which carries raw fields, entity keys and the time field ``at`` (default: the
        sources' time column). ``record_events`` makes served requests events of their source
        (``True`` for the only source, or its name).

        With ``format="skops"``, every type the artifact needs beyond skops' own defaults must
        be trusted here, by name, in ``trusted`` (or ``SLIPWAY_TRUSTED_TYPES``); otherwise
        UntrustedArtifact names them and nothing is registered. The list is recorded with the
        version and used to load it. Tree ensembles need ``"sklearn.tree._tree.Tree"``: skops
        leaves it untrusted on purpose (a crafted tree can crash the process that runs it), so
        trusting it says that this artifact comes from a pipeline you fitted.
        """
        check_name(name)
        if format not in art.FORMATS:
            raise InvalidModel(f"format must be one of {', '.join(art.FORMATS)}, not {format!r}")
        code = art.code_of(pipeline)  # raises for a pipeline pickle cannot save
        portability.refuse_main(code)
        payload = art.dump_model(pipeline, format)
        trusted_types: list[str] = []
        if format == "skops":  # refused before anything loads it, even in a fresh process
            trusted_types = _skops_trust(name, payload, trusted, self.settings)
        elif trusted:
            raise InvalidModel(
                f"trusted={list(trusted)!r} applies to format='skops' only; joblib artifacts "
                "load any type (see docs/serving.md, Security model)."
            )
        # Registration's machinery (scikit-learn's metrics, skl2onnx) is imported here, not at
        # the top: a serving worker imports the registry to load versions, never to register.
        from slipway.registration import describe

        with portability.LoadCheck(code, payload, format, trusted_types) as check:
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
                nullable=nullable,
                ranges=ranges,
                sample_size=self.settings.profile_sample_rows,
                seed=seed,
                onnx=onnx,
                features=features,
                at=at,
                record_events=record_events,
            )
            check.raise_for_failure()
        meta = desc.meta
        if "features" in meta:
            self._save_sources(meta["features"]["definitions"]["sources"])
        meta["modules"] = code.modules
        meta["local_modules"] = portability.local_roots(code)
        if format == "skops":
            meta["env"] = library_versions("skops")
            meta["trusted_types"] = trusted_types
        blobs = {
            "model": payload,
            "profile": json.dumps(desc.profile, sort_keys=True).encode(),
            "sample": to_parquet_bytes(desc.sample),
            "reference_predictions": to_parquet_bytes(desc.reference),
        }
        if desc.onnx is not None:
            blobs["onnx"] = desc.onnx
        if desc.estimator is not None:
            blobs["estimator"] = estimation.dump_estimator(desc.estimator, format)
            if format == "skops":
                # Slipway fitted the estimator itself (a DLE loss model), so the types it needs
                # are trusted here, recorded with the version like the user's trusted list.
                meta["estimator_trusted_types"] = art.untrusted_types(blobs["estimator"], "skops")
        meta["artifacts"] = {role: self.artifacts.put(blob) for role, blob in blobs.items()}
        # Checked before every read: a file of another size is refused before it is hashed.
        meta["artifact_sizes"] = {meta["artifacts"][r]: len(b) for r, b in blobs.items()}
        sha = meta["artifacts"]["model"]
        version = tables.add_version(
            self.store,
            name,
            sha256=sha,
            format=format,
            actor=current_user(self.settings.user),
            description=description,
            tags=dict(tags or {}),
            meta=meta,
        )
        # A delete between the puts and the record may have removed a file with the same bytes
        # (no version referred to it yet); deletes and records are serialized, so looking now
        # is enough.
        for role, blob in blobs.items():
            if not self.artifacts.path(meta["artifacts"][role]).exists():
                self.artifacts.put(blob)
        _log_backend(f"{name}:{version}", meta.get("onnx"))
        if alias:
            self.promote(name, version, alias=alias)
        return self.get(f"{name}:{version}")

    # -- lookup ----------------------------------------------------------------------------

    def resolve(self, ref: str) -> tuple[str, int]:
        """Turn a reference into (name, version): ``name`` means production, else latest."""
        name, version, alias = parse_ref(ref)
        return name, tables.resolve(self.store, name, version, alias, DEFAULT_ALIAS)

    def get(self, ref: str) -> ModelVersion:
        """The version a reference points at."""
        return ModelVersion(**tables.version(self.store, *self.resolve(ref)))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of a model, oldest first."""
        check_name(name)
        return [ModelVersion(**record) for record in tables.versions(self.store, name)]

    def models(self) -> list[ModelSummary]:
        """All models with their version counts and aliases, by name."""
        return [ModelSummary(**record) for record in tables.summaries(self.store)]

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
        data = self._read(mv, mv.sha256)  # raises before any deserialization
        portability.check_importable(
            mv.ref, mv.meta.get("modules", []), mv.meta.get("local_modules", {})
        )
        try:
            pipeline = art.load_model(
                data,
                mv.format,  # type: ignore[arg-type]
                # What the registering user trusted (recorded with the version), plus the
                # settings' list, which versions registered before trust was recorded rely on.
                trusted=self._trusted(mv),
                source=str(self.artifacts.path(mv.sha256)),
            )
        except (ImportError, AttributeError) as exc:
            if isinstance(exc, SlipwayError) or not portability.is_lookup_failure(exc):
                raise
            raise portability.unloadable(mv.ref, exc) from exc
        graph = mv.meta.get("artifacts", {}).get("onnx")
        if backend == "auto" and graph and backends.runtime_available():
            session = backends.OnnxSession(self._read(mv, graph), mv.contract)
            engine = backends.OnnxBackend(session, backends.SklearnBackend.of(pipeline, mv))
            return Model(pipeline, mv, engine, enricher)
        return Model(pipeline, mv, enricher=enricher)

    def profile(self, mv: ModelVersion) -> dict[str, Any]:
        """The reference profile stored with a version."""
        result: dict[str, Any] = json.loads(self._read(mv, mv.meta["artifacts"]["profile"]))
        return result

    def reference_sample(self, mv: ModelVersion) -> pd.DataFrame:
        """The bounded random sample of training rows stored with a version."""
        return from_parquet_bytes(self._read(mv, mv.meta["artifacts"]["sample"]))

    def reference_predictions(self, mv: ModelVersion) -> pd.DataFrame:
        """The version's predictions on its validation data (label, ``proba:<class>`` / value)."""
        return from_parquet_bytes(self._read(mv, mv.meta["artifacts"]["reference_predictions"]))

    def _read(self, mv: ModelVersion, sha256: str) -> bytes:
        """One artifact of ``mv``: its type, recorded size and hash checked before use."""
        return self.artifacts.get(sha256, mv.artifact_size(sha256))

    def estimator(self, mv: ModelVersion) -> estimation.Calibration | estimation.LossModel | None:
        """The performance estimator fitted at registration (a CBPE calibration or a DLE loss
        model), or None for versions registered without validation data or before estimators
        were recorded."""
        sha = mv.meta.get("artifacts", {}).get("estimator")
        if sha is None:
            return None
        return estimation.load_estimator(
            self._read(mv, sha),
            mv.meta["estimation"],
            mv.format,
            trusted=[*mv.meta.get("estimator_trusted_types", ()), *self.settings.trusted_types],
            source=str(self.artifacts.path(sha)),
        )

    # -- aliases ---------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = DEFAULT_ALIAS,
        actor: str | None = None,
        via: str | None = None,
    ) -> ModelVersion:
        """Point ``alias`` at ``version`` (atomically) and record the move.

        The audit event names ``actor`` (default: the configured or OS user) and, when given,
        the channel ``via`` (``"ui"`` for the web console). Moving ``production`` from one
        version to another records whether a passing `slipway check` backs the new version
        (``check_id``, or ``checked: false``), and is refused without one when
        ``SLIPWAY_PROMOTE_UNCHECKED=refuse``; a model's first production version needs none.
        """
        check_alias(alias)
        checks = self.settings.promote_unchecked if alias == DEFAULT_ALIAS else "off"
        tables.promote(
            self.store, name, version, alias, self._actor(actor), detail=_via(via), checks=checks
        )
        return self.get(f"{name}:{version}")

    def rollback(
        self,
        name: str,
        *,
        alias: str = DEFAULT_ALIAS,
        actor: str | None = None,
        via: str | None = None,
    ) -> ModelVersion:
        """Move ``alias`` back to the version it held before its latest move (audited as
        :meth:`promote` is)."""
        check_alias(alias)
        target = tables.rollback(self.store, name, alias, self._actor(actor), detail=_via(via))
        return self.get(f"{name}:{target}")

    def unalias(
        self, name: str, alias: str, *, actor: str | None = None, via: str | None = None
    ) -> int:
        """Remove ``alias`` from model ``name`` and record it; the version it pointed at.

        The version itself is untouched (archive it separately). Removing ``production``
        makes servers stop serving the model within a poll interval; promote a version to
        serve it again. A later ``rollback`` of the alias has nothing to go back from.
        """
        check_alias(alias)
        return tables.remove_alias(self.store, name, alias, self._actor(actor), detail=_via(via))

    def archive(
        self, name: str, version: int, *, actor: str | None = None, via: str | None = None
    ) -> ModelVersion:
        """Retire a version: still loadable as ``name:N``, never promoted or picked as latest
        (audited as :meth:`promote` is)."""
        tables.archive(self.store, name, version, self._actor(actor), detail=_via(via))
        return self.get(f"{name}:{version}")

    def delete(
        self,
        name: str,
        version: int | None = None,
        *,
        actor: str | None = None,
        via: str | None = None,
    ) -> Deleted:
        """Delete version ``version`` of ``name`` (every version when None) for good.

        Refused while an alias points at a version being deleted. Artifact files are removed
        only when no remaining version (of any model) refers to them. Version numbers are never
        reused. One ``delete`` audit event per version, naming ``actor`` and ``via`` as
        :meth:`promote` does. The prediction log, batch results and monitoring runs of the
        version are history and stay.
        """
        check_name(name)

        def remove(hashes: Sequence[str]) -> None:
            for sha in hashes:
                self.artifacts.remove(sha)

        return tables.delete_versions(
            self.store, name, version, self._actor(actor), remove=remove, detail=_via(via)
        )

    def aliases(self, name: str) -> dict[str, int]:
        """Alias -> version for one model."""
        return tables.alias_map(self.store, name)

    def alias_versions(self, alias: str, names: Sequence[str] = ()) -> dict[str, int]:
        """Model -> the version ``alias`` points at, for every model that has that alias (or
        only for ``names``): what a server loads and follows."""
        return tables.alias_targets(self.store, alias, names)

    # -- audit and integrity ---------------------------------------------------------------

    def record_event(
        self,
        action: str,
        name: str | None = None,
        *,
        version: int | None = None,
        from_version: int | None = None,
        to_version: int | None = None,
        actor: str | None = None,
        via: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        """Add an event that is not a registry change (a reload) to the audit trail."""
        audit.add_event(
            self.store,
            self._actor(actor),
            action,
            name,
            version=version,
            from_version=from_version,
            to_version=to_version,
            detail={**(detail or {}), **_via(via)},
        )

    def audit(self, name: str | None = None, *, limit: int = 100) -> list[AuditEvent]:
        """Registry changes, newest first."""
        return [AuditEvent(**event) for event in audit.audit_log(self.store, name, limit=limit)]

    def verify(self, name: str | None = None, *, load: bool = True) -> list[ArtifactCheck]:
        """Re-hash every artifact of every version (of one model, or all).

        With ``load`` (the default), each model artifact whose hash matches is also loaded in a
        fresh Python process of this environment, as ``slipway serve`` would load it; one that
        fails is reported ``"unloadable"`` with the error as ``detail``.
        """
        names = [name] if name else [m.name for m in self.models()]
        checks: list[ArtifactCheck] = []
        loads: list[tuple[int, art.Loadable]] = []  # model artifacts to load, by index in checks
        for model_name in names:
            for mv in self.versions(model_name):
                for role, sha in mv.meta.get("artifacts", {"model": mv.sha256}).items():
                    size = mv.artifact_size(sha)
                    status, detail = self.artifacts.diagnose(sha, size)
                    check = ArtifactCheck(model_name, mv.version, role, sha, status, detail)
                    if load and role == "model" and status == "ok":
                        path = self.artifacts.path(sha)
                        item = art.Loadable(mv.format, path, sha, size, self._trusted(mv))  # type: ignore[arg-type]
                        loads.append((len(checks), item))
                    checks.append(check)
        errors = art.load_errors([item for _, item in loads])
        for (i, _), error in zip(loads, errors, strict=True):
            if error is not None:
                checks[i] = replace(checks[i], status="unloadable", detail=error)
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

    def _trusted(self, mv: ModelVersion) -> tuple[str, ...]:
        """The skops types trusted to load ``mv``'s model: as recorded, plus the settings'."""
        return (*mv.meta.get("trusted_types", ()), *self.settings.trusted_types)

    def _actor(self, actor: str | None) -> str:
        return actor or current_user(self.settings.user)

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


def _via(via: str | None) -> dict[str, str]:
    return {"via": via} if via else {}


def _skops_trust(
    name: str, payload: bytes, trusted: Sequence[str], settings: Settings
) -> list[str]:
    """The types beyond skops' defaults a skops artifact needs, all of them trusted, or raise."""
    needed = art.untrusted_types(payload, "skops")
    allowed = {*trusted, *settings.trusted_types}
    refused = [t for t in needed if t not in allowed]
    if refused:
        listed = ", ".join(repr(t) for t in refused)
        raise UntrustedArtifact(
            "",
            refused,
            f"Nothing was registered. If you trust this pipeline (you fitted it), register it "
            f"with trusted=[{listed}]: the list is recorded with the version and used to load "
            "it. skops refuses these by default because loading them runs their code (a "
            "custom function) or trusts their content (a crafted tree can crash the process).",
            what=f"The skops artifact of {name!r}",
        )
    return sorted(needed)


def _log_backend(ref: str, verdict: Mapping[str, Any] | None) -> None:
    """Say which engine will serve a new version and why (a warning when ONNX was refused)."""
    if verdict is None:
        return
    if verdict["accepted"]:
        logger.info("%s serves with ONNX Runtime: %s", ref, verdict["reason"])
    else:
        logger.warning(
            "%s will be served by scikit-learn, not ONNX Runtime: %s", ref, verdict["reason"]
        )
