"""Settings, read once from ``SLIPWAY_*`` environment variables and passed in from there.

Nothing below this module reads ``os.environ``: the CLI, the server and the top-level
functions build one :class:`Settings` and hand it to the objects they create.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from slipway.exceptions import ConfigError


class Settings(BaseSettings):
    """Where Slipway keeps its state and how strict it is.

    Every field can be set by an environment variable named ``SLIPWAY_`` + the field name in
    capitals, e.g. ``SLIPWAY_HOME=/srv/slipway``.
    """

    model_config = SettingsConfigDict(env_prefix="SLIPWAY_", extra="ignore", frozen=True)

    home: Path = Field(Path(".slipway"), description="Holds slipway.db and artifacts/.")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store; default sqlite:///<home>/slipway.db. "
        "Use postgresql+psycopg://user:pass@host/db for several processes or hosts.",
    )
    on_version_mismatch: Literal["warn", "refuse"] = Field(
        "warn", description="Loading a model saved under another scikit-learn minor version."
    )
    trusted_types: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Extra type names skops artifacts may contain, comma separated."
    )
    user: str | None = Field(None, description="Name recorded in audit events; default: OS user.")
    profile_sample_rows: int = Field(10_000, ge=0, description="Rows kept as drift reference.")
    alert_webhook_url: str | None = Field(
        None, description="Monitoring runs POST their verdict as JSON here (see alert_min_status)."
    )
    alert_min_status: Literal["OK", "WARN", "ALERT"] = Field(
        "ALERT", description="The least serious monitoring status sent to the webhook."
    )
    alert_webhook_attempts: int = Field(3, ge=1, le=10, description="Tries per webhook alert.")
    alert_webhook_backoff: float = Field(
        1.0, ge=0, description="Seconds before the second try; doubled before each later one."
    )
    alert_webhook_timeout: float = Field(5.0, gt=0, description="Seconds per webhook request.")

    @field_validator("trusted_types", mode="before")
    @classmethod
    def _split_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the environment, turning a bad value into a ConfigError that names the variable."""
        try:
            return cls(**overrides)  # type: ignore[arg-type]
        except ValidationError as exc:
            problems = [
                f"SLIPWAY_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            ]
            raise ConfigError("Invalid Slipway settings:", problems) from None

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to the SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{(self.home / 'slipway.db').resolve()}"

    @property
    def artifacts_dir(self) -> Path:
        """Directory of content-addressed artifact files."""
        return self.home / "artifacts"
