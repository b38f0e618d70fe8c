"""The devnet's demo compute jobs: what node2's runtimes run.

Why this exists: ``mycelia devnet`` makes node2 a compute provider, and a
runtime needs a program. This one is standard library only and runs by its
path (``python3 -I -S demo_jobs.py primes``), so the job user (``nobody``
when the devnet runs as root) needs nothing but an interpreter it may
execute and read access to this file — not the node's virtualenv, which
may live in a home directory ``nobody`` cannot enter.

Jobs (input on stdin, output on stdout):

* ``primes`` — the input is an integer N (at most :data:`MAX_N`); prints
  how many primes are below N. CPU-bound: a sieve, so CPU seconds grow
  with N.
* ``words`` — word frequencies of the input text (case-folded, letters,
  digits and apostrophes), most frequent first, one ``count word`` a line,
  at most :data:`TOP` lines.
"""

from __future__ import annotations

import collections
import re
import sys

#: The largest N ``primes`` accepts (a sieve of this many bytes).
MAX_N = 200_000_000
#: Lines ``words`` prints.
TOP = 50
_WORD = re.compile(r"[\w']+")


def primes_below(n: int) -> int:
    if n < 3:
        return 0
    sieve = bytearray([1]) * n
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n**0.5) + 1):
        if sieve[i]:
            sieve[i * i :: i] = bytes(len(range(i * i, n, i)))
    return sum(sieve)


def word_counts(text: str, top: int = TOP) -> list[tuple[int, str]]:
    counts = collections.Counter(w.casefold() for w in _WORD.findall(text))
    return [(c, w) for w, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("primes", "words"):
        print("usage: demo_jobs.py primes|words < input", file=sys.stderr)
        return 2
    data = sys.stdin.buffer.read()
    if argv[0] == "primes":
        try:
            n = int(data.decode("ascii").strip() or "0")
        except (UnicodeDecodeError, ValueError):
            print("primes: the input is an integer N", file=sys.stderr)
            return 2
        if not 0 <= n <= MAX_N:
            print(f"primes: N must be 0 ... {MAX_N}", file=sys.stderr)
            return 2
        print(f"{primes_below(n)} primes below {n}")
        return 0
    for count, word in word_counts(data.decode("utf-8", errors="replace")):
        print(f"{count} {word}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
