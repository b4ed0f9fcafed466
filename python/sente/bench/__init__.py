"""The fan-out benchmark: csente's broadcast against other servers (or any running Sente server), side by side.

``sente bench --help`` (or ``python -m sente.bench``). Modules:

* :mod:`sente.bench.run`: the command line and the run of each peer (connect, idle, burst, rate);
* :mod:`sente.bench.loadgen`: picows clients in one or more processes, the publisher, latency histograms;
* :mod:`sente.bench.servers`: each peer as a pinned subprocess, always killed at the end;
* :mod:`sente.bench.metrics`: server CPU and RSS from /proc, summed over the server's processes;
* :mod:`sente.bench.report`: JSON lines, the markdown table, ratios and the PNG chart;
* :mod:`sente.bench.app`: the csente app the csente peers serve (``broadcast(event)`` of every published event).

The comparison peers that are not csente (raw picows, python-socketio) live in ``bench/peers`` of a source checkout.
"""
