"""Topic names: one prefix per deployment, fixed suffixes."""

from __future__ import annotations

from plantwatch.core.topics import Topics


def test_topic_names_carry_the_prefix() -> None:
    t = Topics("site7")
    assert t.raw == "site7.readings.raw"
    assert t.clean == "site7.readings.clean"
    assert t.features == "site7.features"
    assert t.anomalies == "site7.anomalies"
    assert t.alerts == "site7.alerts"
    assert t.dead_letters == "site7.deadletters"
    assert t.machines == "site7.machines"
    assert t.metrics == "site7.metrics"
    assert Topics().raw == "plantwatch.readings.raw"


def test_all_topics_are_distinct() -> None:
    for topics in (Topics(), Topics("a"), Topics("plant.site-7")):
        names = topics.all()
        assert len(names) == 8
        assert len(set(names)) == 8
        assert all(n.startswith(f"{topics.prefix}.") for n in names)
        assert set(names) == {
            topics.raw,
            topics.clean,
            topics.features,
            topics.anomalies,
            topics.alerts,
            topics.dead_letters,
            topics.machines,
            topics.metrics,
        }
    assert set(Topics("a").all()).isdisjoint(Topics("b").all())
