"""DedupFilter: (gw, seq) seen set that persists, commits only after the write, and prunes."""

from __future__ import annotations

from pathlib import Path

from collector.dedup import DedupFilter
from shouhu.model import Record

TS = 1_763_800_000_000


def recs(*seqs: int) -> list[Record]:
    return [Record(s, TS + s, "tap", "nfc-tag@1", "nfc:04a1", {"n": s}) for s in seqs]


def test_unseen_records_pass_and_committed_ones_are_dropped(tmp_path: Path) -> None:
    d = DedupFilter(str(tmp_path / "s.db"))
    new, dups = d.filter_new("gw-1", recs(1, 2, 3))
    assert [r.seq for r in new] == [1, 2, 3] and dups == 0
    d.commit("gw-1", new)
    new, dups = d.filter_new("gw-1", recs(2, 3, 4))
    assert [r.seq for r in new] == [4] and dups == 2
    # another gateway has its own seq space
    new, dups = d.filter_new("gw-2", recs(2, 3))
    assert [r.seq for r in new] == [2, 3] and dups == 0
    d.close()


def test_without_commit_a_redelivery_is_new_again(tmp_path: Path) -> None:
    """A crash between write and commit means a rewrite, never a loss."""
    d = DedupFilter(str(tmp_path / "s.db"))
    d.filter_new("gw-1", recs(1, 2))
    new, dups = d.filter_new("gw-1", recs(1, 2))
    assert len(new) == 2 and dups == 0
    d.close()


def test_duplicates_inside_one_batch(tmp_path: Path) -> None:
    d = DedupFilter(str(tmp_path / "s.db"))
    new, dups = d.filter_new("gw-1", recs(5, 5, 6))
    assert [r.seq for r in new] == [5, 6] and dups == 1
    d.close()


def test_seen_set_survives_restart_and_tracks_high_water(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    d = DedupFilter(path)
    d.commit("gw-1", recs(10, 3))
    d.close()
    d = DedupFilter(path)
    new, dups = d.filter_new("gw-1", recs(3, 10, 11))
    assert [r.seq for r in new] == [11] and dups == 2
    assert d.high_water() == {"gw-1": 10}
    d.close()


def test_prune_forgets_entries_older_than_max_age(tmp_path: Path) -> None:
    now = [1_000_000.0]
    d = DedupFilter(str(tmp_path / "s.db"), max_age_s=3600, clock=lambda: now[0])
    d.commit("gw-1", recs(1))
    now[0] += 1800
    d.commit("gw-1", recs(2))
    now[0] += 2000  # seq 1 is 3800 s old, seq 2 is 2000 s old
    assert d.prune() == 1
    assert d.seen_count() == 1
    new, _ = d.filter_new("gw-1", recs(1, 2))
    assert [r.seq for r in new] == [1]
    d.close()


def test_large_batches_stay_below_the_sqlite_variable_limit(tmp_path: Path) -> None:
    d = DedupFilter(str(tmp_path / "s.db"))
    batch = recs(*range(2000))
    d.commit("gw-1", batch[:1500])
    new, dups = d.filter_new("gw-1", batch)
    assert len(new) == 500 and dups == 1500
    d.close()
