"""KRaft helpers that need no broker."""

from __future__ import annotations

import base64

from plantwatch.services._kraft import new_cluster_id


def test_cluster_ids_are_16_bytes_and_never_look_like_an_option() -> None:
    # one id in 64 would start with "-" if drawn naively: kafka-storage then fails with
    # "argument --cluster-id/-t: expected one argument" (seen in CI)
    ids = [new_cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)
