"""Regenerate the markdown report (and print the summary) from a results JSON:

    python benchmarks/report.py benchmarks/results/peers-<time>.json [out.md]
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import print_summary, write_markdown  # noqa: E402

if __name__ == "__main__":
    path = sys.argv[1]
    md = sys.argv[2] if len(sys.argv) > 2 else os.path.splitext(path)[0] + ".md"
    with open(path) as f:
        doc = json.load(f)
    write_markdown(doc, md, os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(md))))
    print_summary(doc)
    print(f"wrote {md}")
