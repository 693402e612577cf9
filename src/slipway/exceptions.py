"""Every error Slipway raises, in one tree.

Each leaf also inherits the builtin a caller would naturally catch, so
``except ValueError`` keeps working around Slipway calls::

    SlipwayError
    ├── ConfigError (ValueError)              a setting or a train config is wrong
    ├── InvalidReference (ValueError)         "fraud:x" is not a model reference
    ├── NotFound (LookupError)
    │   ├── ModelNotFound                     no such model, version or alias target
    │   ├── RunNotFound                       no such batch or monitoring run
    │   ├── KeyNotFound                       no API key of that name
    │   ├── PredictionNotFound                no batch prediction stored for that key
    │   └── ExperimentNotFound                no such experiment, or none running for a model
    ├── RegistryConflict (ValueError)         the registry's state forbids the change
    │   └── ExperimentConflict                an experiment's state forbids the change
    ├── InvalidModel (ValueError)             not a fitted estimator we can register
    ├── ContractViolation (ValueError)        input does not meet the model's contract
    ├── BatchInputError (ValueError)          a batch input cannot be read or keyed
    ├── RunConflict (ValueError)              a batch run id cannot be resumed as asked
    ├── BatchFailed (RuntimeError)            a batch run stopped; resume it with its run id
    ├── FeatureDefinitionError (ValueError)   a feature definition or its input is wrong
    ├── FeatureSkew (RuntimeError)            importable feature code differs from registered
    ├── CannotCheck (ValueError)              `slipway check` has no usable holdout or target
    ├── ArtifactError
    │   ├── ArtifactMissing (FileNotFoundError)
    │   ├── ArtifactCorrupted (ValueError)    bytes on disk do not match the recorded sha256
    │   ├── InvalidDigest (ValueError)        a recorded sha256 is not a sha256 at all
    │   ├── UntrustedArtifact (ValueError)    a skops file holds types nobody trusted
    │   └── UnloadableArtifact (ImportError)  it refers to code this process cannot import
    ├── IncompatibleEnvironment (RuntimeError) library versions differ and settings refuse
    ├── MissingDependency (ImportError)       an optional extra is not installed
    ├── InvalidRequest (ValueError)           an HTTP body is not what the route takes (422)
    │   ├── MalformedRequest                  not JSON, NaN/Infinity, nested too deep (400)
    │   └── RequestTooLarge                   body bytes or rows above the limits (413)
    ├── AccessDenied (PermissionError)
    │   ├── Unauthorized                      no API key, or an unknown or revoked one (401)
    │   └── Forbidden                         the key's role does not allow the route (403)
    ├── Unavailable (RuntimeError)            try again after ``retry_after`` seconds
    │   ├── RateLimited                       the key used up its request budget (429)
    │   ├── Overloaded                        too many requests in flight (503)
    │   ├── FeaturesUnavailable               the event store cannot be read (503)
    │   └── ModelNotReady                     the model's production version failed to load (503)
    ├── ReloadFailed (RuntimeError)           a new version failed to load; the old one serves
    └── DeliveryFailed (RuntimeError)         an alert sink could not deliver (no secrets shown)

Warnings derive from ``SlipwayWarning`` (a ``UserWarning``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slipway.problems import Problem


class SlipwayError(Exception):
    """Root of every error Slipway raises on purpose."""


class ConfigError(SlipwayError, ValueError):
    """A setting or a configuration file is invalid.

    ``problems`` lists every issue found, one sentence each.
    """

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class InvalidReference(SlipwayError, ValueError):
    """A model reference is not of the form ``name``, ``name:3`` or ``name@alias``."""


class NotFound(SlipwayError, LookupError):
    """Something that was asked for does not exist."""


class ModelNotFound(NotFound):
    """No model, version or alias matches the reference."""


class RunNotFound(NotFound):
    """No recorded run has that id."""


class KeyNotFound(NotFound):
    """No API key has that name."""


class PredictionNotFound(NotFound):
    """No batch prediction is stored for that model and key."""


class ExperimentNotFound(NotFound):
    """No experiment has that id, or the model has no running experiment."""


class RegistryConflict(SlipwayError, ValueError):
    """The registry's current state forbids the change (e.g. promoting an archived version)."""


class ExperimentConflict(RegistryConflict):
    """An experiment's state forbids the change: one already runs for the model, it has
    stopped, or its verdict refuses the promotion."""


class InvalidModel(SlipwayError, ValueError):
    """The object cannot be registered (not an estimator, not fitted, wrong inputs)."""


class ContractViolation(SlipwayError, ValueError):
    """Input rows break the model's input contract.

    ``problems`` holds every problem found in the request, not just the first.
    """

    def __init__(self, problems: Sequence[Problem], model: str = "model") -> None:
        self.problems = list(problems)
        shown = "; ".join(p.describe() for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        n = len(self.problems)
        super().__init__(f"Input breaks the contract of {model}: {n} problem(s): {shown}{more}")


class BatchInputError(SlipwayError, ValueError):
    """A batch input cannot be used: no files match, unknown format, bad or duplicate keys."""


class RunConflict(SlipwayError, ValueError):
    """A batch run id exists but cannot be resumed as asked (other model, input or output)."""


class BatchFailed(SlipwayError, RuntimeError):
    """A batch run stopped on an error; chunks already written stay, and it can be resumed."""

    def __init__(self, run_id: str, message: str) -> None:
        self.run_id = run_id
        super().__init__(message)


class FeatureDefinitionError(SlipwayError, ValueError):
    """A feature definition is invalid, or data does not fit it (unknown input, wrong type)."""


class FeatureSkew(SlipwayError, RuntimeError):
    """The feature code importable now differs from the code recorded with the version.

    ``changed`` names the features whose definitions differ.
    """

    def __init__(self, message: str, changed: Sequence[str] = ()) -> None:
        self.changed = list(changed)
        super().__init__(message)


class CannotCheck(SlipwayError, ValueError):
    """A gate check cannot run: no holdout rows, too few of them, or no target column."""


class ArtifactError(SlipwayError):
    """An artifact file cannot be used."""


class ArtifactMissing(ArtifactError, FileNotFoundError):
    """The artifact file recorded for a version is not on disk."""


class ArtifactCorrupted(ArtifactError, ValueError):
    """The artifact's bytes do not hash to the sha256 recorded at registration.

    Also raised, before any hashing, for a path that is not a regular file (a symlink to a
    device, a FIFO, a directory) or whose size differs from the size recorded at registration;
    ``reason`` says which.
    """

    def __init__(self, path: str, expected: str, actual: str = "", reason: str = "") -> None:
        self.path, self.expected, self.actual = path, expected, actual
        self.reason = reason or f"expected sha256 {expected}, found {actual}"
        what = f"{reason} (sha256 {expected})" if reason else self.reason
        super().__init__(
            f"Artifact {path} is corrupted: {what}. "
            "It was not deserialized; restore the file or register the model again."
        )


class InvalidDigest(ArtifactError, ValueError):
    """A recorded artifact hash is not a hex sha256 digest (the record is damaged)."""


class UntrustedArtifact(ArtifactError, ValueError):
    """A skops artifact contains types outside the trusted list.

    ``what`` replaces "Artifact PATH" at the start of the message (registration names the
    model instead); ``hint`` replaces the default advice.
    """

    def __init__(
        self, path: str, types: Sequence[str], hint: str = "", *, what: str | None = None
    ) -> None:
        self.path, self.types = path, list(types)
        super().__init__(
            f"{what or f'Artifact {path}'} contains untrusted types: {', '.join(self.types)}. "
            + (
                hint
                or "Add them to SLIPWAY_TRUSTED_TYPES only if you trust where this model came from."
            )
        )


class UnloadableArtifact(ArtifactError, ImportError):
    """The artifact refers to code (a module, a function in ``__main__``) that this process
    cannot import; the message names it and how to make it importable."""


class IncompatibleEnvironment(SlipwayError, RuntimeError):
    """The model was saved under library versions that settings refuse to load under."""


class MissingDependency(SlipwayError, ImportError):
    """An optional extra is needed but not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package, self.extra = package, extra
        super().__init__(
            f"{purpose} needs {package}, which is not installed. "
            f"Install it with: pip install 'slipway[{extra}]'"
        )


class SlipwayWarning(UserWarning):
    """Base of every warning Slipway emits."""


class VersionMismatchWarning(SlipwayWarning):
    """A model is loaded under a different scikit-learn minor version than it was saved with."""


class InvalidRequest(SlipwayError, ValueError):
    """An HTTP request body is JSON but not of the form the route takes.

    ``problems`` lists every problem found (unknown or missing top-level fields, wrong types).
    """

    def __init__(self, message: str, problems: Sequence[Problem] = ()) -> None:
        self.problems = list(problems)
        super().__init__(message)


class MalformedRequest(InvalidRequest):
    """The body cannot be read at all: not JSON, a NaN/Infinity literal, nested too deep."""


class RequestTooLarge(InvalidRequest):
    """The body has more bytes, or more rows, than the server accepts."""


class AccessDenied(SlipwayError, PermissionError):
    """The request may not use this route."""


class Unauthorized(AccessDenied):
    """No API key was sent, or it is unknown or revoked."""


class Forbidden(AccessDenied):
    """The API key's role does not allow this route."""


class Unavailable(SlipwayError, RuntimeError):
    """The server refuses the request for now; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class RateLimited(Unavailable):
    """The API key has used up its request budget."""


class Overloaded(Unavailable):
    """Too many requests are in flight in this worker; excess load is shed, not queued."""


class FeaturesUnavailable(Unavailable):
    """The events behind a model's features cannot be read right now (the store is down)."""


class ModelNotReady(Unavailable):
    """A model this server should serve is not loaded: its version failed to load or verify.

    The server retries the load with backoff; ``retry_after`` says when it tries next.
    """


class ReloadFailed(SlipwayError, RuntimeError):
    """A new model version failed to load or verify; the version serving keeps serving."""


class DeliveryFailed(SlipwayError, RuntimeError):
    """An alert sink could not deliver a monitoring verdict.

    The message names the sink by scheme, host and port only: credentials, paths and query
    strings of webhook URLs (where services put their secrets) never appear in it.
    """
