"""``centrality tui``: the fleet dashboard (Textual).

Layout (dependencies point down; only ``app``, ``screens`` and ``widgets``
import Textual):

* ``app.py``: the ``CentralityApp`` (thin: screens, keys, the redraw tick)
* ``screens/``: cluster, machine, events, help; one screen per file
* ``widgets/``: the fleet table (Line API), summary bar, banner, charts...
* ``feed.py``: keeps the model fed from the subscription; reconnects with backoff
* ``model.py``: the fleet model (rows, sort, filter, sparklines, summary, events), pure
* ``series.py``: time series of one machine and the charts they make, pure
* ``format.py``: numbers, rates, ages and sparklines as short strings, pure
* ``source.py``: the ``FleetSource`` interface and its implementation over the operator client
* ``execrun.py``: an exec's plan (the control plane's dry run) and its folded results, pure

The in-memory ``FleetSource`` for tests, snapshots and the benchmark is a test
double, outside the product: ``tests/tui/fake.py``.
"""
