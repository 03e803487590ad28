"""``centrality export prometheus``: the fleet's latest values as one Prometheus scrape target.

A separate process, an operator client over SSH (a viewer key is enough): it
holds one ``subscribe --values`` stream open and serves what it last received
over HTTP in the Prometheus text format, written by prometheus_client. The
control plane itself still speaks only SSH.

* ``naming.py``: keys -> metric families and labels; sanitising (pure)
* ``fleet.py``: the subscription's documents applied into what a scrape reads (pure)
* ``collector.py``: the prometheus_client Collector
* ``link.py``: the subscription, reset and reopened with backoff when it breaks
* ``serve.py``: the HTTP endpoint and the process around it

prometheus_client is imported by ``collector.py`` and ``serve.py`` only, which
the CLI imports when the command runs (``centrality --help`` stays light).
"""
