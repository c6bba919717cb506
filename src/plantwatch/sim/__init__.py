"""The simulated plant: machines, their physics, injectable labelled faults, a legacy gateway.

Start with :func:`build_plant` (what the plant is made of), :func:`parse_fault_spec` and
:func:`schedule_faults` (what goes wrong, and when: the ground truth), then :class:`Simulator`,
whose :meth:`~Simulator.step` yields readings in batches: an Arrow table for machines with the
edge SDK and JSON-style records, with gateway defects, for legacy machines.
"""

from plantwatch.sim.errors import SimulationError
from plantwatch.sim.faults import (
    MACHINE_FAULTS,
    SENSOR_FAULTS,
    Fault,
    FaultKind,
    FaultPlan,
    Placement,
    ground_truth,
    labelled_sensor,
    parse_fault_spec,
    schedule_faults,
    warmup_s,
)
from plantwatch.sim.gateway import RECORD_ISSUES, GatewayIssues, LegacyGateway
from plantwatch.sim.plant import (
    MACHINE_TYPES,
    RATED_CURRENT_A,
    MachineSpec,
    Plant,
    SensorSpec,
    build_plant,
    electrical_power_kw,
)
from plantwatch.sim.simulator import Chunk, Simulator

__all__ = [
    "MACHINE_FAULTS",
    "MACHINE_TYPES",
    "RATED_CURRENT_A",
    "RECORD_ISSUES",
    "SENSOR_FAULTS",
    "Chunk",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "GatewayIssues",
    "LegacyGateway",
    "MachineSpec",
    "Placement",
    "Plant",
    "SensorSpec",
    "SimulationError",
    "Simulator",
    "build_plant",
    "electrical_power_kw",
    "ground_truth",
    "labelled_sensor",
    "parse_fault_spec",
    "schedule_faults",
    "warmup_s",
]
