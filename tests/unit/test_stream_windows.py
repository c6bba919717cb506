"""Event-time tumbling windows: statistics, watermark, lateness, sources, silence."""

from __future__ import annotations

import numpy as np
import pytest

from plantwatch.stream.windows import Closed, Tumbling

S = 10_000  # window size in ms


def tumbling(**kw: int) -> Tumbling:
    args = {
        "size_ms": S,
        "out_of_orderness_ms": 2_000,
        "allowed_lateness_ms": 20_000,
        "idle_ms": 30_000,
    }
    args.update(kw)
    return Tumbling(**args)


def add(
    w: Tumbling,
    sensor: list[int],
    ts: list[int],
    values: list[float],
    source: list[int] | None = None,
    arrival_ms: int | None = None,
):
    n = len(sensor)
    return w.add(
        np.array(sensor, np.int64),
        np.array(ts, np.int64),
        np.array(values, np.float64),
        include=np.ones(n, np.bool_),
        out_of_range=np.zeros(n, np.bool_),
        n_sensors=max(sensor) + 1 if sensor else 1,
        source=None if source is None else np.array(source, np.int64),
        arrival_ms=arrival_ms,
    )


def by_start(closed: list[Closed]) -> dict[int, Closed]:
    return {c.start_ms: c for c in closed}


def test_statistics_match_numpy_however_the_batch_is_split() -> None:
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, S, 200))
    x = rng.normal(5, 2, 200)
    for splits in ([200], [1, 199], [50, 50, 100], [7] * 28 + [4]):
        w = tumbling()
        i = 0
        for k in splits:
            add(w, [0] * k, ts[i : i + k].tolist(), x[i : i + k].tolist())
            i += k
        add(w, [0], [3 * S], [0.0])  # moves the watermark past the first window
        fired, _ = w.advance()
        c = by_start(fired)[0]
        assert c.count[0] == 200
        assert c.mean[0] == pytest.approx(x.mean())
        assert c.std[0] == pytest.approx(x.std(ddof=1))
        assert c.min[0] == x.min() and c.max[0] == x.max()
        assert c.last[0] == x[-1]
        assert c.rms[0] == pytest.approx(np.sqrt(np.mean(x * x)))


def test_window_fires_when_the_watermark_passes_its_end() -> None:
    w = tumbling()
    add(w, [0], [1_000], [1.0])
    add(w, [0], [S + 1_000], [1.0])  # watermark = 11 s - 2 s = 9 s < 10 s
    assert w.advance()[0] == []
    add(w, [0], [S + 2_000], [1.0])  # watermark = 10 s: window [0, 10) fires
    fired, _ = w.advance()
    assert [c.start_ms for c in fired] == [0]


def test_late_within_lateness_updates_the_window_with_a_new_version() -> None:
    w = tumbling()
    add(w, [0, 0], [1_000, 15_000], [1.0, 1.0])
    fired, _ = w.advance()
    assert by_start(fired)[0].count[0] == 1
    r = add(w, [0], [2_000], [3.0])
    assert r.late.tolist() == [True] and r.too_late.tolist() == [False]
    _, updates = w.advance()
    (u,) = updates
    assert (u.start_ms, u.count[0], u.mean[0], u.version[0]) == (0, 2, 2.0, 1)
    assert u.sensors.tolist() == [0]


def test_late_beyond_lateness_is_flagged_and_left_out() -> None:
    w = tumbling()
    add(w, [0], [1_000], [1.0])
    add(w, [0], [40_000], [1.0])  # watermark 38 s: window [0,10) ended 28 s ago > lateness 20 s
    w.advance()
    r = add(w, [0], [2_000], [9.0])
    assert r.late.tolist() == [True] and r.too_late.tolist() == [True]
    assert w.advance()[1] == []  # no update emitted


def test_slow_source_holds_the_watermark_until_idle() -> None:
    w = tumbling()
    add(w, [0, 1], [1_000, 1_000], [1.0, 1.0], source=[0, 1])
    add(w, [0], [20_000], [1.0], source=[0])  # source 1 is 19 s behind, not idle (30 s)
    w.advance()
    assert w.watermark == 1_000 - 2_000
    r = add(w, [1], [9_000], [1.0], source=[1])
    assert r.late.tolist() == [False]  # its window had not fired
    add(w, [0], [45_000], [1.0], source=[0])  # source 1 now 36 s behind: idle
    w.advance()
    assert w.watermark == 45_000 - 2_000


def test_silence_still_fires_a_window_for_every_sensor() -> None:
    w = tumbling()
    add(w, [0, 1], [1_000, 1_000], [1.0, 1.0])
    w.advance()
    add(w, [0], [35_000], [1.0])  # sensor 1 silent; windows 10-20 s and 20-30 s had no data at all
    fired, _ = w.advance()
    starts = [c.start_ms for c in fired]
    assert 0 in starts and 20_000 in starts
    silent = by_start(fired)[20_000]
    assert silent.count.tolist() == [0, 0]
    assert silent.last_seen_ms.tolist() == [1_000, 1_000]


def test_flush_fires_everything_open() -> None:
    w = tumbling()
    add(w, [0], [1_000], [1.0])
    assert w.advance()[0] == []
    fired, _ = w.advance(flush=True)
    assert [c.start_ms for c in fired] == [0]


def test_restore_watermark_makes_older_data_late() -> None:
    w = tumbling()
    w.restore_watermark(100_000)
    r = add(w, [0], [50_000], [1.0])
    assert r.late.tolist() == [True]


def test_excluded_rows_count_as_seen_but_not_in_statistics() -> None:
    w = tumbling()
    w.add(
        np.array([0, 0], np.int64),
        np.array([1_000, 2_000], np.int64),
        np.array([1.0, 999.0]),
        include=np.array([True, False]),
        out_of_range=np.array([False, True]),
        n_sensors=1,
    )
    add(w, [0], [30_000], [1.0])
    c = by_start(w.advance()[0])[0]
    assert (c.count[0], c.max[0], c.out_of_range[0]) == (1, 1.0, 1)
    assert c.last_seen_ms[0] >= 2_000


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window size"):
        Tumbling(size_ms=0, out_of_orderness_ms=0, allowed_lateness_ms=0)
    with pytest.raises(ValueError, match="idle"):
        Tumbling(size_ms=1, out_of_orderness_ms=0, allowed_lateness_ms=0, idle_ms=0)


def test_idleness_in_processing_time_waits_for_a_lagging_source_that_still_arrives() -> None:
    # A Kafka worker reads one partition behind another: both keep arriving, so the watermark
    # follows the slower one, however far behind in event time it is.
    w = tumbling(idle_ms=5_000)
    add(w, [0, 1], [1_000, 1_000], [1.0, 1.0], source=[0, 1], arrival_ms=100)
    add(w, [0], [600_000], [1.0], source=[0], arrival_ms=200)
    add(w, [1], [2_000], [1.0], source=[1], arrival_ms=300)
    w.advance()
    assert w.watermark == 2_000 - 2_000
    # source 1 then stops arriving: 5 s of processing time later it no longer holds anyone back
    add(w, [0], [601_000], [1.0], source=[0], arrival_ms=5_400)
    w.advance()
    assert w.watermark == 601_000 - 2_000


def test_resume_after_a_restore_does_not_count_the_stop_as_silence() -> None:
    w = tumbling(idle_ms=5_000)
    add(w, [0, 1, 2], [1_000, 1_000, 1_000], [1.0] * 3, source=[0, 1, 2], arrival_ms=100)
    add(w, [0, 1], [3_000, 3_000], [1.0, 1.0], source=[0, 1], arrival_ms=6_000)  # 2 is idle
    w.advance()
    assert w.watermark == 3_000 - 2_000
    # the job stops here and is restored 60 s later; source 0 arrives first
    w.resume(66_000)
    add(w, [0], [9_000], [1.0], source=[0], arrival_ms=66_000)
    w.advance()
    assert w.watermark == 3_000 - 2_000  # source 1 still holds it back (it was active) ...
    add(w, [1], [9_000], [1.0], source=[1], arrival_ms=66_100)
    w.advance()
    assert w.watermark == 9_000 - 2_000  # ... and source 2, idle before the stop, is still idle


def test_resume_without_a_restore_changes_nothing() -> None:
    w = tumbling(idle_ms=5_000)
    w.resume(1_000)  # nothing arrived yet
    add(w, [0, 1], [1_000, 1_000], [1.0, 1.0], source=[0, 1], arrival_ms=2_000)
    w.resume(1_500)  # not later than the latest arrival
    add(w, [0], [30_000], [1.0], source=[0], arrival_ms=2_100)
    w.advance()
    assert w.watermark == 1_000 - 2_000
