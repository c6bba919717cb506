"""The model registry: versioned models in a folder or a bucket, one promoted per machine type.

Layout under the registry root (a folder, ``gs://bucket/prefix`` or ``s3://bucket/prefix``; the
same storage code as the archive, so every upload is verified)::

    <machine_type>/<name>/v0003/model.onnx       the scoring graph (input X, output score)
    <machine_type>/<name>/v0003/metadata.json    feature spec, training range, threshold,
                                                  metrics, library versions, model sha256
    <machine_type>/promoted.json                 {"name", "version", "promoted_at", "by"}

A version is complete when its ``metadata.json`` exists: it is written last, after the model,
and names the model's sha256, which is checked on every load. Versions count up per
(machine type, name) and are never overwritten. Promoting writes ``promoted.json`` in one put;
the stream reads it every few seconds and loads the new version without a restart.
"""

from __future__ import annotations

import getpass
import hashlib
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plantwatch.batch.archive import Archive
from plantwatch.core.clock import iso_ms
from plantwatch.core.errors import PlantwatchError

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
PROMOTED_FILE = "promoted.json"
FORMAT_VERSION = 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


class RegistryError(PlantwatchError):
    """The registry has no such model, or a model there is not usable."""


@dataclass(frozen=True, slots=True)
class ModelRef:
    machine_type: str
    name: str
    version: int

    @property
    def folder(self) -> str:
        return f"{self.machine_type}/{self.name}/v{self.version:04d}"

    def __str__(self) -> str:
        return f"{self.machine_type}/{self.name}/v{self.version}"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    ref: ModelRef
    onnx: bytes
    metadata: dict[str, Any]


def check_name(what: str, value: str) -> str:
    if not _NAME.fullmatch(value):
        raise RegistryError(
            f"{what} {value!r} is not usable as a registry name: letters, digits, '_', '-', '.'"
        )
    return value


def parse_ref(text: str) -> tuple[str, str, int | None]:
    """``TYPE/NAME[/vN]`` → (machine type, name, version or None for the latest)."""
    parts = text.strip("/").split("/")
    if len(parts) not in (2, 3):
        raise RegistryError(f"a model is named TYPE/NAME or TYPE/NAME/vN, got {text!r}")
    version = None
    if len(parts) == 3:
        m = re.fullmatch(r"v?(\d+)", parts[2])
        if not m:
            raise RegistryError(f"a version is vN (e.g. v3), got {parts[2]!r}")
        version = int(m.group(1))
    return check_name("machine type", parts[0]), check_name("model name", parts[1]), version


class Registry:
    def __init__(self, url: str) -> None:
        self.url = url
        # a local folder is made by the first registration, not by looking
        self.store = Archive.open(url, create=False)

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    # -- versions ---------------------------------------------------------------------------

    def versions(self, machine_type: str | None = None) -> list[ModelRef]:
        """Complete versions (with metadata), sorted by type, name, version."""
        found = []
        for path in self.store.list(machine_type or ""):
            parts = path.split("/")
            if len(parts) != 4 or parts[3] != METADATA_FILE:
                continue
            m = _VERSION_DIR.match(parts[2])
            if m:
                found.append(ModelRef(parts[0], parts[1], int(m.group(1))))
        return sorted(found, key=lambda r: (r.machine_type, r.name, r.version))

    def resolve(self, machine_type: str, name: str, version: int | None) -> ModelRef:
        refs = [r for r in self.versions(machine_type) if r.name == name]
        if not refs:
            known = sorted({f"{r.machine_type}/{r.name}" for r in self.versions()})
            raise RegistryError(
                f"no model {machine_type}/{name} in {self.url}; models there: "
                f"{', '.join(known) or 'none (train one with plantwatch train)'}"
            )
        if version is None:
            return refs[-1]
        for r in refs:
            if r.version == version:
                return r
        raise RegistryError(
            f"no version v{version} of {machine_type}/{name} in {self.url}; versions: "
            f"{', '.join(f'v{r.version}' for r in refs)}"
        )

    def register(
        self, machine_type: str, name: str, onnx: bytes, metadata: dict[str, Any]
    ) -> ModelRef:
        """Store a new version: the model first, its metadata (naming the model's sha256) last."""
        check_name("machine type", machine_type)
        check_name("model name", name)
        # every version folder counts, also one without metadata (an interrupted registration):
        # its number is not reused
        existing = [
            int(m.group(1))
            for path in self.store.list(f"{machine_type}/{name}")
            if path.count("/") >= 3 and (m := _VERSION_DIR.match(path.split("/")[2]))
        ]
        ref = ModelRef(machine_type, name, max(existing, default=0) + 1)
        sha256, _ = self.store.put_bytes(f"{ref.folder}/{MODEL_FILE}", onnx)
        meta = {
            **metadata,
            "format_version": FORMAT_VERSION,
            "machine_type": machine_type,
            "name": name,
            "version": ref.version,
            "registered_at": iso_ms(datetime.now(UTC)),
            "model_sha256": sha256,
        }
        self.store.write_json(f"{ref.folder}/{METADATA_FILE}", meta)
        return ref

    def metadata(self, ref: ModelRef) -> dict[str, Any]:
        meta = self.store.read_json(f"{ref.folder}/{METADATA_FILE}")
        if not isinstance(meta, dict):
            raise RegistryError(f"model {ref} has no metadata in {self.url}")
        return meta

    def load(self, ref: ModelRef) -> LoadedModel:
        meta = self.metadata(ref)
        data = self.store.get_bytes(f"{ref.folder}/{MODEL_FILE}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != meta.get("model_sha256"):
            raise RegistryError(
                f"model {ref} in {self.url} does not match its metadata (sha256 {digest}, "
                f"expected {meta.get('model_sha256')}): re-register it"
            )
        return LoadedModel(ref, data, meta)

    # -- promotion --------------------------------------------------------------------------

    def promote(self, ref: ModelRef) -> dict[str, Any]:
        self.metadata(ref)  # it must exist and be complete
        record = {
            "name": ref.name,
            "version": ref.version,
            "promoted_at": iso_ms(datetime.now(UTC)),
            "by": f"{getpass.getuser()}@{socket.gethostname()}",
        }
        self.store.write_json(f"{ref.machine_type}/{PROMOTED_FILE}", record)
        return record

    def promoted(self, machine_type: str) -> ModelRef | None:
        rec = self.store.read_json(f"{machine_type}/{PROMOTED_FILE}")
        if not isinstance(rec, dict):
            return None
        return ModelRef(machine_type, str(rec["name"]), int(rec["version"]))

    def promoted_all(self) -> dict[str, ModelRef]:
        """The promoted model of every machine type that has one."""
        out = {}
        for path in self.store.list(""):
            parts = path.split("/")
            if len(parts) == 2 and parts[1] == PROMOTED_FILE:
                ref = self.promoted(parts[0])
                if ref is not None:
                    out[parts[0]] = ref
        return out
