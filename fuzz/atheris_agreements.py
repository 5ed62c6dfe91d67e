"""Coverage-guided fuzzing (atheris) of the agreement loader: YAML text -> Agreement.

Property: ``parse_agreement`` returns an agreement or raises ``AgreementFileError``; any
other exception is a crash (atheris stops and writes the input to ``crash-*``).  Seeded
with the bundled agreements.  Run by hand, bounded:

    .venv/bin/python fuzz/atheris_agreements.py -runs=20000 -max_len=4096

A crash found here gets a regression test in ``tests/security/test_fuzz.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports():
    import yaml  # noqa: F401  (instrumented: the parser is what we fuzz)

    from safehaven.agreements import AgreementFileError, parse_agreement

PATH = Path("fuzz.yaml")


def one(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        parse_agreement(text, PATH)
    except AgreementFileError:
        pass
    except RecursionError:
        pass  # deeply nested YAML: PyYAML's own recursion limit; refused, not a crash


def main() -> None:
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
