"""Sensor index: (machine_id, sensor_id) → a dense integer, so state lives in NumPy arrays.

Lookups are per *distinct* key in a batch (dictionary encoding), never per row. A sensor's kind
and machine type are fixed by the first reading seen (and the machine registry).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from plantwatch.detect.base import KIND_INDEX

UNKNOWN_TYPE = "unknown"
_SEP = "\x1f"


class SensorRegistry:
    def __init__(self, machine_types: Mapping[str, str] | None = None) -> None:
        self.machine_types: dict[str, str] = dict(machine_types or {})
        self._index: dict[str, int] = {}
        self._machine_index: dict[str, int] = {}
        self._machine_of = np.zeros(0, np.int64)
        self.machine: list[str] = []
        self.sensor: list[str] = []
        self._kind = np.zeros(0, np.int8)
        self._mtype: list[str] = []
        self._types_cache: npt.NDArray[np.object_] | None = None
        self._names_cache: tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]] | None = None

    def __len__(self) -> int:
        return len(self.machine)

    def set_machine_types(self, types: Mapping[str, str]) -> None:
        self.machine_types.update(types)
        for i, m in enumerate(self.machine):
            self._mtype[i] = self.machine_types.get(m, UNKNOWN_TYPE)
        self._types_cache = None

    def add(self, machine_id: str, sensor_id: str, kind: str) -> int:
        key = machine_id + _SEP + sensor_id
        idx = self._index.get(key)
        if idx is not None:
            return idx
        idx = len(self.machine)
        self._index[key] = idx
        self.machine.append(machine_id)
        self.sensor.append(sensor_id)
        self._mtype.append(self.machine_types.get(machine_id, UNKNOWN_TYPE))
        if idx >= len(self._kind):
            grown = np.zeros(max(16, 2 * len(self._kind)), np.int8)
            grown[: len(self._kind)] = self._kind
            self._kind = grown
        self._kind[idx] = KIND_INDEX.get(kind, -1)
        if idx >= len(self._machine_of):
            grown_m = np.zeros(max(16, 2 * len(self._machine_of)), np.int64)
            grown_m[: len(self._machine_of)] = self._machine_of
            self._machine_of = grown_m
        self._machine_of[idx] = self._machine_index.setdefault(machine_id, len(self._machine_index))
        self._types_cache = None
        return idx

    def lookup(self, machine: pa.Array, sensor: pa.Array, kind: pa.Array) -> npt.NDArray[np.int64]:
        """Index per row, registering new sensors. Inputs must have no nulls."""
        if len(machine) == 0:
            return np.zeros(0, np.int64)
        key = pc.binary_join_element_wise(machine, sensor, _SEP)
        enc = pc.dictionary_encode(key)
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.combine_chunks()
        keys = enc.dictionary.to_pylist()
        codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), np.int64)
        first = np.full(len(keys), -1, np.int64)
        first[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
        kinds = pc.take(kind, pa.array(first)).to_pylist()
        mapping = np.empty(len(keys), np.int64)
        for j, k in enumerate(keys):
            idx = self._index.get(k)
            if idx is None:
                m, s = k.split(_SEP, 1)
                idx = self.add(m, s, kinds[j])
            elif self._kind[idx] < 0:
                self._kind[idx] = KIND_INDEX.get(kinds[j], -1)
            mapping[j] = idx
        return mapping[codes]

    def find(self, machine_id: str, sensor_id: str) -> int | None:
        return self._index.get(machine_id + _SEP + sensor_id)

    @property
    def machine_of(self) -> npt.NDArray[np.int64]:
        """Machine index (0 .. machines-1) of each sensor index."""
        return self._machine_of[: len(self.machine)]

    @property
    def kinds(self) -> npt.NDArray[np.int8]:
        return self._kind[: len(self.machine)]

    def names(self) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.object_]]:
        """(machine_id, sensor_id) per sensor index, as object arrays for fancy indexing."""
        if self._names_cache is None or len(self._names_cache[0]) != len(self.machine):
            self._names_cache = (
                np.array(self.machine, dtype=object),
                np.array(self.sensor, dtype=object),
            )
        return self._names_cache

    @property
    def types(self) -> npt.NDArray[np.object_]:
        if self._types_cache is None or len(self._types_cache) != len(self._mtype):
            self._types_cache = np.array(self._mtype, dtype=object)
        return self._types_cache
