"""The fan-out benchmark: csente's broadcast against python-socketio, raw picows and itself with N workers.

Run ``python -m bench.fanout --help`` (or ``sente bench`` from a source checkout). Modules:

* :mod:`bench.fanout.__main__`: the command line and the run of each peer (connect, idle, burst, rate);
* :mod:`bench.fanout.loadgen`: picows clients in one or more processes, the publisher, latency histograms;
* :mod:`bench.fanout.servers`: each peer as a pinned subprocess, always killed at the end;
* :mod:`bench.fanout.metrics`: server CPU and RSS from /proc, summed over the server's processes;
* :mod:`bench.fanout.report`: JSON lines, the markdown table, ratios and the PNG chart.
"""
