"""One typed settings object for the whole farm.

Settings come from a YAML file (configs/default.yaml, or the file named by FARM_CONFIG) and are
then overridden by FARM_* environment variables: FARM_DATABASE_URL overrides `database_url`, and
so on. Values may refer to the data folder as `{home}`. A bad value stops start-up with an error
naming the key it came from, as Warehouse's `configure()` does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional
from urllib.parse import urlparse

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from farm.errors import InvalidInput

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = REPO_ROOT / "configs"
DEFAULT_CONFIG = CONFIGS_DIR / "default.yaml"
ENV_PREFIX = "FARM_"


class SettingsError(InvalidInput):
    """A configuration key has a bad value; `field` is the key as the user wrote it."""


QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
Port = Annotated[int, Field(ge=1, le=65535)]
SECRET_KEY_MIN_LENGTH = 32


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Path("./farm-data")
    database_url: str = "sqlite:///{home}/farm.sqlite3"
    # Empty means the embedded broker: a folder under `home` that every farm process on this
    # machine shares, so `farm up`, `farm render` and `farm worker` see one queue without services.
    broker_url: str = ""
    storage_url: str = "file://{home}/objects"
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""

    web_host: str = "127.0.0.1"
    web_port: Port = 8080
    # Signs the dashboard's session cookies. Empty on the embedded default: one is generated into
    # {home}/secret_key and reused. A farm on PostgreSQL must set it (FARM_SECRET_KEY), and the
    # same value on every web process; see web_secret_key().
    secret_key: str = ""
    # Send the session cookie over HTTPS only. Turn on wherever the dashboard is served over TLS.
    session_cookie_secure: bool = False
    session_lifetime_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12

    default_model: str = "tiny-sd"
    # "auto" takes CUDA when torch sees a GPU and the CPU otherwise.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3
    lease_seconds: Annotated[int, Field(ge=10, le=86400)] = 300
    # A worker that fails one job's renders this many times is kept off that job (as Flamenco does).
    blocklist_after: Annotated[int, Field(ge=1, le=100)] = 3
    # An object in storage with no asset row, older than this, is an orphan the reaper deletes.
    # Long enough that a worker between writing its image and committing its row is never hit.
    orphan_grace_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 3600
    # How often a worker reports in; a worker silent for 3 intervals counts as gone.
    heartbeat_seconds: Annotated[float, Field(gt=0, le=3600)] = 10
    # The embedded broker polls its folder; this bounds how long a queued render waits for pickup.
    embedded_broker_poll_seconds: Annotated[float, Field(gt=0, le=10)] = 0.05

    # Models a worker keeps warm (loaded), least recently used out first: at most this many, and
    # at most this much memory for their weights (0: half the GPU's memory, a quarter of RAM on CPU).
    model_cache_models: Annotated[int, Field(ge=1, le=32)] = 2
    model_cache_gib: Annotated[float, Field(ge=0, le=4096)] = 0

    # "diffusers" renders for real; "instant" returns a fixed small image at once, without
    # loading a model: for measuring dispatch (bench/dispatch.py) and dry runs of a new farm.
    render_engine: Literal["diffusers", "instant"] = "diffusers"
    # Routing: a render goes to the queue named here for its model (by name) or its
    # architecture (sd1, sd2, sdxl), else to the queue named after its architecture; upscale
    # renders go to `upscale`. Lets ops give a model or architecture its own GPU pool, e.g.
    # {"sdxl": "big-gpus", "tiny-sd": "cpu"}. In a FARM_ variable: "sdxl=big-gpus,tiny-sd=cpu".
    queue_routes: dict[str, str] = Field(default_factory=dict)
    # Warm-model-first routing: up to this many queued renders per worker go straight to a live
    # worker that already holds their model in memory; the rest wait in the shared queue.
    # 0 turns it off.
    warm_queue_depth: Annotated[int, Field(ge=0, le=100)] = 2
    # A queued render that waits this long while its queue is empty in the broker (a message
    # lost in a broker restart, or an enqueue that failed after the commit) is sent again.
    stranded_after_seconds: Annotated[int, Field(ge=2, le=86400)] = 60

    # Batch jobs: the largest CSV of variable rows accepted, the most variable rows per job, and
    # the most renders (rows x seeds x channel formats) per job.
    max_csv_bytes: Annotated[int, Field(ge=1024, le=1 << 30)] = 5 * 1024 * 1024
    max_rows_per_job: Annotated[int, Field(ge=1, le=1_000_000)] = 5_000
    max_renders_per_job: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000

    # License policy: the organisation's declared annual revenue in USD, which revenue-capped
    # licenses (Stability AI Community: commercial use free under USD 1M) are checked against.
    # Unset: commercial campaigns cannot use a revenue-capped model until ops declare it.
    organisation_annual_revenue_usd: Optional[Annotated[int, Field(ge=0)]] = None
    # Folders (absolute paths) whose files `farm models add` may register, besides {home}/models.
    # In a FARM_ variable: comma-separated.
    model_folders: list[Path] = Field(default_factory=list)

    # Provenance (farm.provenance, README "Provenance"). A C2PA manifest signed into every PNG a
    # worker writes, with this certificate chain (PEM: the signing certificate first, then the CA
    # certificates that issued it) and its private key (PEM, unencrypted PKCS#8). Workers read the
    # files and try them on a test image at start-up; other processes never open them.
    c2pa_signing: bool = False
    c2pa_cert_chain_path: str = Field("", validate_default=True)
    c2pa_private_key_path: str = Field("", validate_default=True)
    c2pa_algorithm: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = "es256"
    # A time-stamp authority (RFC 3161) that countersigns each manifest, so it stays valid after
    # the certificate expires. Empty: none (the farm reaches no network unless told to).
    c2pa_timestamp_url: str = ""
    # CA certificates (PEM) that `farm provenance show` trusts when it checks a signer.
    c2pa_trust_anchors_path: str = ""
    # An invisible watermark in the pixels (dwtDct): this farm's id (2 ASCII characters) and the
    # render id. Images under 256x256 pixels of area are too small for it and go unmarked.
    watermark: Literal["off", "dwtDct"] = "off"
    watermark_farm_id: str = "RF"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlparse(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("redis", "rediss", "amqp", "amqps", "pyamqp"):
            raise ValueError("must be empty (embedded broker) or a redis:// or amqp:// URL")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme == "file":
            if not parsed.path.startswith("/") or parsed.netloc:
                raise ValueError("a file URL needs an absolute path: file:///path/to/folder")
        elif parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError("an S3 URL names a bucket: s3://bucket/optional/prefix")
        else:
            raise ValueError("must be file:///path or s3://bucket/prefix")
        return value

    @field_validator("queue_routes", mode="before")
    @classmethod
    def _queue_routes(cls, value: Any) -> Any:
        if isinstance(value, str):  # from an environment variable: "key=queue,key=queue"
            pairs = [item.strip() for item in value.split(",") if item.strip()]
            if any(pair.count("=") != 1 for pair in pairs):
                raise ValueError("must be comma-separated MODEL_OR_ARCHITECTURE=QUEUE pairs")
            value = dict(pair.split("=") for pair in pairs)
        if isinstance(value, dict):
            for key, queue in value.items():
                if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue.strip()):
                    raise ValueError(f"queue name {queue!r} for {key!r} must be letters, digits, '-' or '_' "
                                     "(up to 64)")
            value = {str(k).strip(): v.strip() for k, v in value.items()}
        return value

    @field_validator("organisation_annual_revenue_usd", mode="before")
    @classmethod
    def _revenue(cls, value: Any) -> Any:
        if isinstance(value, str):  # from an environment variable: empty means not declared
            value = value.strip().replace("_", "").replace(",", "")
            return value or None
        return value

    @field_validator("model_folders", mode="before")
    @classmethod
    def _model_folders(cls, value: Any) -> Any:
        if isinstance(value, str):  # from an environment variable: "/models/a,/models/b"
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list):
            for item in value:
                if not isinstance(item, (str, Path)) or not Path(item).is_absolute():
                    raise ValueError(f"{item!r} is not an absolute path")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str) -> str:
        if value and len(value) < SECRET_KEY_MIN_LENGTH:
            raise ValueError(f"must be at least {SECRET_KEY_MIN_LENGTH} characters (try: "
                             "python -c 'import secrets; print(secrets.token_urlsafe(48))')")
        return value

    @field_validator("c2pa_cert_chain_path", "c2pa_private_key_path")
    @classmethod
    def _c2pa_paths(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("c2pa_signing") and not value.strip():
            raise ValueError("is required when c2pa_signing is on (a PEM file; see README, Provenance)")
        return value.strip()

    @field_validator("c2pa_timestamp_url")
    @classmethod
    def _timestamp_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be empty (no time-stamp authority) or an http:// or https:// URL")
        return value

    @field_validator("watermark_farm_id")
    @classmethod
    def _watermark_farm_id(cls, value: str) -> str:
        from farm.provenance.payload import check_farm_id

        return check_farm_id(value)

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_url(cls, value: str) -> str:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// URL")
        return value

    # Paths derived from `home`, so nobody builds them by hand elsewhere.
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def allowed_model_folders(self) -> list[Path]:
        """Where registered model files may live: {home}/models and the model_folders setting."""
        return [self.models_dir.resolve(), *(Path(folder).resolve() for folder in self.model_folders)]

    @property
    def embedded_broker_dir(self) -> Path:
        return self.home / "broker"

    @property
    def uses_embedded_broker(self) -> bool:
        return not self.broker_url

    @property
    def uses_embedded_database(self) -> bool:
        return urlparse(self.database_url).scheme.startswith("sqlite")

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret_key"


def _env_key(field: str) -> str:
    return ENV_PREFIX + field.upper()


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SettingsError("FARM_CONFIG", f"config file {path} does not exist") from None
    except yaml.YAMLError as error:
        raise SettingsError(str(path), f"not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SettingsError(str(path), "must be a mapping of keys to values")
    return loaded


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the config file and FARM_* overrides; raise SettingsError naming the bad key."""
    environ = os.environ if environ is None else environ
    config_path = Path(environ.get("FARM_CONFIG") or DEFAULT_CONFIG)
    file_values = _read_config_file(config_path)
    origin = {key: f"{config_path}: {key}" for key in file_values}

    values = dict(file_values)
    for field in Settings.model_fields:
        env_key = _env_key(field)
        if env_key in environ:
            values[field] = environ[env_key]
            origin[field] = env_key
    unknown_env = sorted(
        key for key in environ
        if key.startswith(ENV_PREFIX) and key != "FARM_CONFIG"
        and key[len(ENV_PREFIX):].lower() not in Settings.model_fields
    )
    if unknown_env:
        raise SettingsError(unknown_env[0], "is not a farm setting")

    home = Path(str(values.get("home", Settings.model_fields["home"].default))).expanduser()
    values["home"] = home.resolve()
    for key, value in values.items():
        if isinstance(value, str):
            values[key] = value.replace("{home}", str(values["home"]))

    try:
        return Settings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "config"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(origin.get(key, key), message) from None


def web_secret_key(settings: Settings) -> str:
    """The key that signs the dashboard's session cookies.

    The `secret_key` setting when given. Otherwise, on the embedded default (SQLite), a key
    generated once into {home}/secret_key (mode 0600) and reused by every later start, so
    sessions survive restarts. A farm on PostgreSQL has several web processes that must agree,
    so there the setting is required and its absence stops start-up naming the key.
    """
    if settings.secret_key:
        return settings.secret_key
    if not settings.uses_embedded_database:
        raise SettingsError("FARM_SECRET_KEY", f"is required for a farm on PostgreSQL (at least "
                                               f"{SECRET_KEY_MIN_LENGTH} characters, the same for every web process)")
    path = settings.secret_key_file
    try:
        key = path.read_text().strip()
    except FileNotFoundError:
        key = ""
    if len(key) >= SECRET_KEY_MIN_LENGTH:
        return key
    if path.exists():
        raise SettingsError(str(path), f"holds fewer than {SECRET_KEY_MIN_LENGTH} characters; delete it to get a new key")
    import secrets
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    # Written to a private temporary file, then linked into place: two processes starting at
    # once both end up with the one key that won the link, and nobody reads a half-written file.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    return path.read_text().strip()
