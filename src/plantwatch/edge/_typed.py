"""Typed helpers, one per sensor kind: thin, explicit wrappers around ``reading``.

Each validates at once (raising :class:`~plantwatch.core.errors.InvalidReadingError` naming the
field and the value) and returns the reading's seq. The unit defaults to the kind's canonical unit.
"""

from __future__ import annotations

from datetime import datetime

from plantwatch.core.kinds import SensorKind


class TypedHelpers:
    """Mixin of :class:`~plantwatch.edge.client.EdgeClient`: one method per ``SensorKind``."""

    def reading(
        self,
        kind: SensorKind | str,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str | None = None,
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        raise NotImplementedError

    def vibration(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "mm/s",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Vibration velocity RMS in mm/s (or in/s, ips, m/s, µm/s).

        Acceleration (g) and displacement are refused: integrate to velocity at the device.
        """
        return self.reading(
            SensorKind.VIBRATION, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def temperature(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "°C",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Temperature in °C (or °F, K)."""
        return self.reading(
            SensorKind.TEMPERATURE, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def humidity(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "%",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Relative humidity in % (or %RH)."""
        return self.reading(
            SensorKind.HUMIDITY, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def pressure(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "bar",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Gauge pressure in bar (or mbar, psi, Pa, kPa, MPa)."""
        return self.reading(
            SensorKind.PRESSURE, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def current(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "A",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Electrical current (RMS) in A (or mA, kA)."""
        return self.reading(
            SensorKind.CURRENT, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def voltage(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "V",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Electrical voltage (RMS) in V (or mV, kV)."""
        return self.reading(
            SensorKind.VOLTAGE, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def power(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "kW",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Active power in kW (or W, MW, hp)."""
        return self.reading(
            SensorKind.POWER, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def speed(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "rpm",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Rotational speed in rpm (or rps, rad/s)."""
        return self.reading(
            SensorKind.SPEED, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )

    def flow(
        self,
        machine_id: str,
        sensor_id: str,
        value: float,
        *,
        unit: str = "m³/h",
        ts: datetime | None = None,
        quality: str = "good",
    ) -> int:
        """Volumetric flow in m³/h (or m3/h, m³/s, L/min, L/s, gpm)."""
        return self.reading(
            SensorKind.FLOW, machine_id, sensor_id, value, unit=unit, ts=ts, quality=quality
        )
