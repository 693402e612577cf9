"""bench/instructions.py: the phases' instruction counts read back from callgrind's dumps."""

from __future__ import annotations

from bench import instructions


def dump(path, part, thread, label, total):
    path.write_text(
        "# callgrind format\nversion: 1\ncreator: callgrind-3.19.0\npid: 7\n"
        f"part: {part}\nthread: {thread}\n\ndesc: Trigger: {label}\n\npositions: line\n"
        f"events: Ir\nsummary: 0\n\nfn=(1) main\n0 5\n\ntotals: {total}\n"
    )


def test_totals_are_read_in_dump_order_with_their_labels(tmp_path):
    """Each client-request dump gives (label, every thread's total, the main thread's),
    ordered by its part number (not by file name: part 10 comes after part 9); the dump at
    program termination is no phase."""
    for part in range(1, 12):
        for thread in (1, 2, 3):
            dump(tmp_path / f"callgrind.out.7.{part}-0{thread}", part, thread,
                 f"Client Request: s{part}|100", part * 1000 * thread)  # fmt: skip
    dump(tmp_path / "callgrind.out.7-01", 12, 1, "Program termination", 99)
    got = instructions.totals(tmp_path)
    assert got == [(f"s{part}|100", part * 6000, part * 1000) for part in range(1, 12)]


def test_outside_the_rerun_start_and_stop_do_nothing(monkeypatch):
    """Without the re-run's environment no library is loaded and nothing is counted."""
    monkeypatch.delenv(instructions.ENV, raising=False)
    assert not instructions.active()
    instructions.start()
    instructions.stop("phase")
    assert instructions._lib is None
