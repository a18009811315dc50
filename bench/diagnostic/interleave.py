#!/usr/bin/env python3
"""Times several commands run in turn, round after round, so that a drift of the machine's speed
(this VM's wanders by a third within minutes) falls on all of them alike; prints each one's
median and mean wall-clock time and its peak RSS (one more run, under GNU time), then the ratios of
the first to the others.

    interleave.py [--compare K] RUNS LABEL -- CMD... [-- LABEL -- CMD...]...
(With RUNS > 1, a warm-up round comes first and is not counted. --compare K: ratios of the first
command to the next K only; the rest are shown for their times.)
"""
import statistics
import subprocess
import sys
import tempfile
import time


def parse(argv):
    compare = None
    if argv[0] == "--compare":
        compare, argv = int(argv[1]), argv[2:]
    runs, rest, entries = int(argv[0]), argv[1:], []
    while rest:
        label, sep = rest[0], rest[1]
        assert sep == "--", "expected: LABEL -- CMD..."
        end = rest.index("--", 2) if "--" in rest[2:] else len(rest)
        entries.append((label, rest[2:end]))
        rest = rest[end + 1:]
    return runs, entries, len(entries) - 1 if compare is None else compare


def run(cmd):
    """Wall-clock ms of one run; output discarded, failures count as runs."""
    t0 = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def peak_rss(cmd):
    """KiB, from GNU time: a child forked by Python would count Python's own pages."""
    with tempfile.NamedTemporaryFile("r") as out:
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out.name] + cmd,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return int(out.read().split()[-1])


def main():
    runs, entries, compare = parse(sys.argv[1:])
    times = {label: [] for label, _ in entries}
    warmup = 1 if runs > 1 else 0
    for round_ in range(runs + warmup):
        for label, cmd in entries:
            ms = run(cmd)
            if round_ >= warmup:
                times[label].append(ms)
    rss = {label: peak_rss(cmd) for label, cmd in entries}
    for label, v in times.items():
        print("%-34s median %9.1f ms   mean %9.1f ms   peak RSS %6d KiB" % (
            label, statistics.median(v), statistics.mean(v), rss[label]))
    first = entries[0][0]
    for label, _ in entries[1:1 + compare]:
        ratio = statistics.median(times[first]) / statistics.median(times[label])
        print("%s takes %.2fx the time of %s (%.1fx %s; medians)" % (
            first, ratio, label, 1 / ratio if ratio < 1 else ratio, "faster" if ratio < 1 else "slower"))


if __name__ == "__main__":
    main()
