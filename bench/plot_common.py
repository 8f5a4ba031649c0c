"""What the bench/plot_*.py scripts share: headless matplotlib and their command line
(`script.py report.json chart.png`)."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402,F401  (re-exported for the scripts)


def report_and_output(doc: str):
    """The JSON report named by argv[1] and the chart path argv[2]; prints `doc` and exits 2
    when the arguments are not those two."""
    if len(sys.argv) != 3:
        print(doc)
        sys.exit(2)
    with open(sys.argv[1]) as f:
        return json.load(f), sys.argv[2]
