"""``centrality export prometheus``: the HTTP endpoint and the process around it.

prometheus_client serves the registry (its WSGI app: content negotiation,
text or OpenMetrics, ``?name[]=`` filtering; gzip is done here, cheaper) on a threading
``wsgiref`` server in a thread of its own; the event loop runs the link to
the control plane. The registry holds the fleet collector and
prometheus_client's process collector (the exporter's own CPU and memory).
SIGTERM or Ctrl-C stops both.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import signal
import socket
import threading
import time
from dataclasses import dataclass
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, ProcessCollector, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, gzip_accepted

from . import naming
from .collector import FleetCollector, LinkStats, ScrapeStats
from .fleet import FleetState
from .link import Link

log = logging.getLogger("centrality.export")


@dataclass
class Options:
    listen: str = "127.0.0.1:9464"
    context: str | None = None
    interval: str = "5s"
    per_core: bool = False
    series_labels: int = naming.MAX_SERIES_LABELS
    max_sample_age: float = 60.0


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass


def build_registry(state: FleetState, link: LinkStats, scrapes: ScrapeStats,
                   max_sample_age: float) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(state, link, scrapes, max_sample_age=max_sample_age))
    registry.register(ProcessCollector(registry=None))
    return registry


#: gzip level of a scrape's body. prometheus_client compresses at level 9: at
#: 10,000 machines (60 MB of text) that is 0.8 s of a scrape, level 1 is 0.16 s
#: for 20 % more bytes (6.1 MB instead of 5.0).
GZIP_LEVEL = 1


def measured(app, scrapes: ScrapeStats):
    """The WSGI app (built with ``disable_compression=True``), compressed here at
    ``GZIP_LEVEL`` when the scraper accepts gzip, with each scrape's time and
    bytes recorded for the next scrape to report."""
    lock = threading.Lock()

    def wrapped(environ, start_response):
        t0 = time.perf_counter()
        answer: list = []
        body = b"".join(app(environ, lambda status, headers, exc_info=None: answer.extend((status, headers))))
        status, headers = answer
        if status.startswith("200") and gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip.compress(body, GZIP_LEVEL)
            headers = [*headers, ("Content-Encoding", "gzip")]
        start_response(status, [(k, v) for k, v in headers if k.lower() != "content-length"]
                       + [("Content-Length", str(len(body)))])
        if environ.get("PATH_INFO", "/") != "/favicon.ico":
            with lock:
                scrapes.duration_s = time.perf_counter() - t0
                scrapes.bytes = len(body)
                scrapes.count += 1
        return [body]

    return wrapped


def start_http(listen: str, app) -> ThreadingWSGIServer:
    from centrality_core.contexts import split_address

    host, port = split_address(listen, default_port=9464)

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    httpd = make_server(host, port, app, Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    return httpd


async def run(opts: Options, *, ready=None) -> None:
    """Serve until SIGTERM / SIGINT. ``ready(address)`` is called once listening."""
    state = FleetState(per_core=opts.per_core, series_labels=opts.series_labels)
    link_stats, scrapes = LinkStats(), ScrapeStats()
    registry = build_registry(state, link_stats, scrapes, opts.max_sample_age)
    httpd = start_http(opts.listen, measured(make_wsgi_app(registry, disable_compression=True), scrapes))
    host, port = httpd.server_address[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if ready is not None:
        ready(address)
    link = Link(state, link_stats, context=opts.context, interval=opts.interval)
    task = asyncio.create_task(link.run())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(httpd.shutdown)
        httpd.server_close()
