"""Highest contiguous committed sequence per publisher."""

from gateway.acks import ContiguousAcks


def test_ack_moves_only_over_contiguous_runs():
    acks = ContiguousAcks()
    assert acks.commit("tono-1", [5, 6, 7]) == 7
    assert acks.commit("tono-1", [9, 10]) is None  # 8 is missing: hold the ack back
    assert acks.acked("tono-1") == 7
    assert acks.commit("tono-1", [8]) == 10
    assert acks.commit("tono-1", [3, 10]) is None  # late or re-sent: already covered


def test_publishers_are_independent_and_empty_commits_change_nothing():
    acks = ContiguousAcks()
    assert acks.commit("a", []) is None and acks.acked("a") is None
    assert acks.commit("a", [0]) == 0
    assert acks.commit("b", [100, 101]) == 101
    assert acks.acked("a") == 0


def test_a_restarted_gateway_continues_each_run():
    acks = ContiguousAcks({"tono-1": 7})
    assert acks.commit("tono-1", [9]) is None  # 8 still missing after the restart
    assert acks.commit("tono-1", [8]) == 9


def test_a_tentative_commit_is_undone_when_the_block_raises():
    acks = ContiguousAcks({"tono-1": 7})
    acks.commit("tono-1", [10])  # 8, 9 missing
    try:
        with acks.tentative():
            assert acks.commit("tono-1", [8, 9]) == 10
            assert acks.commit("new-1", [0, 1]) == 1
            raise RuntimeError("the store refused the batch")
    except RuntimeError:
        pass
    assert acks.acked("tono-1") == 7 and acks.acked("new-1") is None
    assert acks.commit("tono-1", [8]) == 8 and acks.commit("tono-1", [9]) == 10  # 10 still held above the gap
    with acks.tentative():
        assert acks.commit("new-1", [0]) == 0
    assert acks.acked("new-1") == 0  # kept: the block ended normally
