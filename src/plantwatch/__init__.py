"""plantwatch: real-time monitoring and alerting for industrial machines.

The data path is the folder tree:

    sim/, edge/  ->  bus/  ->  stream/ + detect/  ->  store/  ->  console/
    (readings)       (topics)  (clean, window,        (ClickHouse)  (live view)
                                detect, alert/)

Start reading at ``core/reading.py`` (the Reading contract), then ``stream/pipeline.py``
(the one place the processing logic lives) and ``stream/local.py`` (the in-process runner).
Off the hot path: ``models/`` (training, the registry, scoring the promoted model per machine
type in the stream), ``evaluate/`` (quality on NAB, TEP, C-MAPSS and the simulator) and
``batch/`` (export, archive, replay).
``cli.py`` is the only module that reads argv and the environment and wires stages together.
"""

from plantwatch.core.errors import PlantwatchError
from plantwatch.core.reading import SCHEMA_VERSION, Quality, Reading

__all__ = ["SCHEMA_VERSION", "PlantwatchError", "Quality", "Reading"]
__version__ = "0.1.0"
