"""The seed-style reference of ``plantwatch bench`` does the pipeline's work, the slow way: it
must store what the pipeline would store, or the ratio against it means nothing."""

from __future__ import annotations

from plantwatch.bench.reference import INSERT_ROWS, run_reference
from plantwatch.store import ClickHouseStore

T0 = 1_800_000_000_000


def records(n: int) -> list[tuple[object, ...]]:
    return [
        ("m1", "centrifugal_pump", "vib", "vibration", T0 + 1000 * i, i + 1, 2.0, "mm/s")
        for i in range(n)
    ]


def test_reference_stores_converts_and_drops_what_the_pipeline_drops(
    store: ClickHouseStore,
) -> None:
    good = records(INSERT_ROWS + 20)  # one full insert and a remainder
    inch = ("m1", "centrifugal_pump", "vib2", "vibration", T0, 1, 0.5, "in/s")
    bad_unit = ("m1", "centrifugal_pump", "vib3", "vibration", T0, 1, 0.5, "g")
    unknown = ("m1", "centrifugal_pump", "tq", "torque", T0, 1, 3.0, "Nm")
    nan = ("m1", "centrifugal_pump", "vib4", "vibration", T0, 1, float("nan"), "mm/s")
    breach = ("m1", "centrifugal_pump", "vib5", "vibration", T0, 1, 9.0, "mm/s")
    r = run_reference(
        store, [*good, good[3], inch, bad_unit, unknown, nan, breach], "readings_ingest"
    )
    assert r["received"] == len(good) + 6
    assert r["duplicates"] == 1
    assert r["rejected"] == 3
    assert r["stored"] == len(good) + 2
    assert r["inserts"] == 2
    # 12.7 mm/s (0.5 in/s) and 9 mm/s are beyond the pump's 4.5 mm/s warning zone
    assert r["limit_breaches"] == 2
    rows = store.query_rows(
        f"SELECT sensor_id, value, unit FROM {store.database}.readings WHERE sensor_id = 'vib2'"
    )
    assert rows == [("vib2", 12.7, "mm/s")]  # 0.5 in/s in canonical units
    (n,) = store.query_rows(f"SELECT count() FROM {store.database}.raw_readings")[0]
    assert n == r["stored"]
