"""The model registry: versioned artifacts and a ``current`` pointer, on S3 or a local directory.

Layout under the registry root (``./models`` or ``s3://bucket/models``)::

    {name}/{version}/model.onnx
    {name}/{version}/metadata.json
    {name}/current.json          {"name": ..., "version": ..., "onnx_sha256": ..., ...}

A version is immutable: publishing different bytes under an existing version is refused, the same
bytes again only moves the pointer. The artifacts are written before ``current.json``, so a reader
that follows the pointer never finds a half-published version.

The store is a port: :class:`LocalObjectStore` for directories, :class:`S3ObjectStore` around an
S3 client the caller creates (this module never imports boto3).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from btcpred.model.metadata import METADATA_FILE, MODEL_FILE, ModelMetadata, parse_metadata
from btcpred.model.runtime import OnnxModel

__all__ = [
    "CURRENT_FILE",
    "CurrentPointer",
    "LocalObjectStore",
    "ModelRegistry",
    "ObjectStore",
    "RegistryError",
    "S3ObjectStore",
    "open_registry",
    "open_store",
]

CURRENT_FILE = "current.json"


class RegistryError(RuntimeError):
    """A registry operation cannot be done (missing model, immutable version, bad URI)."""


class ObjectStore(Protocol):
    """Bytes by key (``/``-separated, relative to the registry root)."""

    def get(self, key: str) -> bytes | None:
        """The object, or None when there is none."""

    def put(self, key: str, data: bytes) -> None:
        """Write the object (replacing it atomically)."""

    def list(self, prefix: str) -> list[str]:
        """Every key under ``prefix``."""


class LocalObjectStore:
    """A directory; writes go through a temporary file and ``os.replace``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return str(self.root)

    def get(self, key: str) -> bytes | None:
        """See :class:`ObjectStore`."""
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes) -> None:
        """See :class:`ObjectStore`."""
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; registry files are for every reader
        os.replace(tmp, path)

    def list(self, prefix: str) -> list[str]:
        """See :class:`ObjectStore`."""
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )


class S3Client(Protocol):
    """The three calls of a boto3 S3 client this store uses."""

    exceptions: Any

    def get_object(self, **kwargs: Any) -> Any: ...

    def put_object(self, **kwargs: Any) -> Any: ...

    def get_paginator(self, operation_name: str) -> Any: ...


class S3ObjectStore:
    """``s3://bucket/prefix`` through a caller-made boto3 S3 client."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def get(self, key: str) -> bytes | None:
        """See :class:`ObjectStore`."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            data: bytes = response["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except Exception as exc:  # noqa: BLE001 - any S3 or network failure is the registry's
            raise RegistryError(f"{self!r}/{key}: {type(exc).__name__}: {exc}") from exc
        return data

    def put(self, key: str, data: bytes) -> None:
        """See :class:`ObjectStore`."""
        content = "application/json" if key.endswith(".json") else "application/octet-stream"
        self.client.put_object(
            Bucket=self.bucket, Key=self._key(key), Body=data, ContentType=content
        )

    def list(self, prefix: str) -> list[str]:
        """See :class:`ObjectStore`."""
        strip = len(self._key("")) if self.prefix else 0
        keys: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        for page in pages:
            keys += [item["Key"][strip:] for item in page.get("Contents", [])]
        return sorted(keys)


class CurrentPointer(msgspec.Struct, frozen=True, kw_only=True):
    """``{name}/current.json``: the version being served."""

    name: str
    version: str
    onnx_sha256: str
    published_at: str


@dataclass(frozen=True)
class ListedModel:
    """One version in the registry, for ``btcpred model list``."""

    name: str
    version: str
    current: bool
    metadata: ModelMetadata


class ModelRegistry:
    """Publish, list and load models in an :class:`ObjectStore` with the layout above."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return repr(self.store)

    def publish(self, directory: Path, *, make_current: bool = True) -> CurrentPointer:
        """Upload a trained model directory (``model.onnx`` + ``metadata.json``).

        Raises
        ------
        RegistryError
            The version exists with different bytes.
        ModelFormatError
            The directory is not a valid, loadable model for this feature engine.
        """
        meta_bytes = (directory / METADATA_FILE).read_bytes()
        onnx = (directory / MODEL_FILE).read_bytes()
        meta = parse_metadata(meta_bytes, str(directory / METADATA_FILE))
        OnnxModel.from_bytes(onnx, meta)  # refuse what serving would refuse
        base = f"{meta.name}/{meta.version}"
        existing = self.store.get(f"{base}/{MODEL_FILE}")
        if existing is not None and existing != onnx:
            raise RegistryError(
                f"{self!r}/{base} exists with a different model; versions are immutable"
            )
        if existing is None:
            self.store.put(f"{base}/{MODEL_FILE}", onnx)
            self.store.put(f"{base}/{METADATA_FILE}", meta_bytes)
        pointer = CurrentPointer(
            name=meta.name,
            version=meta.version,
            onnx_sha256=meta.onnx_sha256,
            published_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )
        if make_current:
            self.store.put(f"{meta.name}/{CURRENT_FILE}", msgspec.json.encode(pointer) + b"\n")
        return pointer

    def current(self, name: str) -> CurrentPointer | None:
        """The pointer of ``name``, or None when nothing is published as current."""
        data = self.store.get(f"{name}/{CURRENT_FILE}")
        if data is None:
            return None
        try:
            return msgspec.json.decode(data, type=CurrentPointer)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise RegistryError(f"{self!r}/{name}/{CURRENT_FILE}: {exc}") from None

    def models(self) -> list[ListedModel]:
        """Every published version, by name then version."""
        out: list[ListedModel] = []
        keys = [k for k in self.store.list("") if k.endswith(f"/{METADATA_FILE}")]
        currents: dict[str, CurrentPointer | None] = {}
        for key in keys:
            parts = key.split("/")
            if len(parts) != 3:
                continue
            name, version = parts[0], parts[1]
            if name not in currents:
                currents[name] = self.current(name)
            data = self.store.get(key) or b""
            pointer = currents[name]
            out.append(
                ListedModel(
                    name=name,
                    version=version,
                    current=pointer is not None and pointer.version == version,
                    metadata=parse_metadata(data, f"{self!r}/{key}"),
                )
            )
        return out

    def fetch(self, name: str, version: str | None = None) -> tuple[bytes, ModelMetadata]:
        """The artifact bytes and metadata of ``version`` (default: the current one)."""
        if version is None:
            pointer = self.current(name)
            if pointer is None:
                raise RegistryError(f"no {CURRENT_FILE} for model {name!r} in {self!r}")
            version = pointer.version
        base = f"{name}/{version}"
        onnx = self.store.get(f"{base}/{MODEL_FILE}")
        meta = self.store.get(f"{base}/{METADATA_FILE}")
        if onnx is None or meta is None:
            raise RegistryError(f"model {base} is not in {self!r}")
        return onnx, parse_metadata(meta, f"{self!r}/{base}/{METADATA_FILE}")

    def load(self, name: str, version: str | None = None) -> OnnxModel:
        """Fetch and open a session (see :meth:`fetch`)."""
        onnx, meta = self.fetch(name, version)
        return OnnxModel.from_bytes(onnx, meta)


def open_store(uri: str, s3_client: S3Client | None = None) -> ObjectStore:
    """An object store at ``s3://bucket/prefix`` (needs ``s3_client``) or a local directory."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        if not bucket:
            raise RegistryError(f"no bucket in URI {uri!r}")
        if s3_client is None:
            raise RegistryError(f"{uri} needs an S3 client")
        return S3ObjectStore(s3_client, bucket, prefix)
    if "://" in uri and not uri.startswith("file://"):
        raise RegistryError(f"URI {uri!r}: use s3://bucket/prefix or a directory")
    return LocalObjectStore(Path(uri.removeprefix("file://")))


def open_registry(uri: str, s3_client: S3Client | None = None) -> ModelRegistry:
    """A registry at ``s3://bucket/prefix`` (needs ``s3_client``) or a local directory path."""
    return ModelRegistry(open_store(uri, s3_client))
