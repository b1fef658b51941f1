"""Settings read once from the environment into typed objects; bad values fail at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BeforeValidator, Field, FilePath, PrivateAttr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from oddstore import callers, db
from oddstore.tls import TlsFiles

DEFAULT_DATABASE_URL = db.DEFAULT_DATABASE_URL


# A service's <PREFIX>_ALLOWED_CLIENTS: "ingest,query", or "*" for any certificate of the CA (oddstore.callers).
AllowedClients = Annotated[frozenset[str] | None, NoDecode, BeforeValidator(callers.parse)]


class TlsSettings(BaseSettings):
    """The TLS files of a service, under the same unprefixed names for every service (a container holds one
    service): its server and its channels to other services use them (oddstore.tls). None set: plaintext."""

    tls_cert_file: FilePath | None = Field(None, alias="TLS_CERT_FILE")
    tls_key_file: FilePath | None = Field(None, alias="TLS_KEY_FILE")
    tls_ca_file: FilePath | None = Field(None, alias="TLS_CA_FILE")

    @model_validator(mode="after")
    def _tls_files(self) -> Self:
        # Caught here, at start-up, rather than when the first port or channel is opened.
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            # A service is a server: requiring client certificates means serving TLS first.
            raise ValueError("TLS_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE: mutual TLS is TLS first")
        return self

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert_file, self.tls_key_file, self.tls_ca_file)


class CommonSettings(TlsSettings):
    """What every service reads; each service subclasses it with its own prefix."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="LOG_FORMAT")
    grace_seconds: float = Field(10.0, gt=0, alias="SHUTDOWN_GRACE_SECONDS")


class DatabaseSettings(BaseSettings):
    """How a service reaches PostgreSQL: the URL, and the password as a file (DATABASE_PASSWORD_FILE, e.g. a compose
    secret) so that the URL, which is an environment variable, need not carry it. Without the file, the URL's
    password (or PGPASSWORD, ~/.pgpass) is used, as before."""

    database_url: str = Field(db.DEFAULT_DATABASE_URL, alias="DATABASE_URL")
    # Empty means unset, as for the migrations (db.password_from_environment).
    database_password_file: Annotated[Path | None, BeforeValidator(lambda v: v or None)] = Field(
        None, alias=db.PASSWORD_FILE_VARIABLE
    )
    # Read once, here, so that a missing or unreadable file fails at start-up; private: not in repr or dumps.
    _database_password: str | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _read_database_password(self) -> Self:
        if self.database_password_file is not None:
            self._database_password = db.read_password(self.database_password_file)
        return self

    @property
    def database_password(self) -> str | None:
        return self._database_password
