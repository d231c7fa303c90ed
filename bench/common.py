"""Helpers shared by the benchmark scripts: where things are, the machine line, results and report blocks."""
from __future__ import annotations

import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: The benchmark data folder (read-only).
SHARED_DATA = os.environ.get("SBDINO_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
RESULTS = os.path.join(REPO, "bench", "results")
FIGURES = os.path.join(RESULTS, "figures")
BENCHMARKS = os.path.join(REPO, "BENCHMARKS.md")


def machine() -> str:
    """One line naming the machine the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        model = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((line.split(":", 1)[1].strip() for line in model.splitlines() if "Model name" in line), cpu)
    except OSError:
        model = cpu
    return f"{os.cpu_count()} CPU cores ({model}), torch {torch.__version__}, {torch.get_num_threads()} threads"


def shown_arguments(argv: Sequence[str]) -> List[str]:
    """The arguments, quoted for a shell, with absolute paths (folders of this machine) shown as ``<folder>``."""
    def shown(item: str) -> str:
        if os.path.isabs(item):
            return "<folder>"
        name, _, value = item.partition("=")
        return f"{name}=<folder>" if value and os.path.isabs(value) else item

    return [shlex.quote(shown(item)) for item in argv]


def command_line(script: str, argv: Optional[Sequence[str]] = None) -> str:
    """``python -m bench.<script> ...`` as a reader can retype it (``argv`` default: this process's
    arguments; see :func:`shown_arguments`)."""
    arguments = shown_arguments(sys.argv[1:] if argv is None else argv)
    return " ".join([f"python -m bench.{script}", *arguments])


def write_result(name: str, command: str, lines: Sequence[str]) -> str:
    """Writes ``bench/results/<name>.md`` with the command, date and machine; returns its text."""
    text = "\n".join(
        [f"Command: `{command}`", f"Date: {datetime.date.today().isoformat()}", f"Machine: {machine()}", "", *lines]
    )
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.md"), "w", encoding="utf-8") as fout:
        fout.write(text + "\n")
    return text


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    """Markdown lines of a table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(row) + " |" for row in rows)]


def publish(tag: str, block: str, appendix: str = "") -> None:
    """A study's report: ``block`` (then ``appendix``) into ``bench/results/<tag>.md``, ``block`` as
    the BENCHMARKS.md block ``tag``, and ``block`` on stdout."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{tag}.md"), "w", encoding="utf-8") as fout:
        fout.write(block + "\n" + appendix)
    write_benchmarks({tag: block})
    print(block)


def replace_block(text: str, name: str, content: str) -> str:
    """Replaces the generated block ``name`` of BENCHMARKS.md (markers kept); appends it when absent."""
    begin, end = f"<!-- run_all:{name} -->", f"<!-- /run_all:{name} -->"
    block = f"{begin}\n{content.strip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip() + "\n\n" + block + "\n"


def write_benchmarks(blocks: Dict[str, str]) -> None:
    """Regenerates the given generated blocks of BENCHMARKS.md, leaving the prose around them alone."""
    text = open(BENCHMARKS, encoding="utf-8").read() if os.path.isfile(BENCHMARKS) else "# Benchmarks\n"
    for name, content in blocks.items():
        text = replace_block(text, name, content)
    with open(BENCHMARKS, "w", encoding="utf-8") as fout:
        fout.write(text)
