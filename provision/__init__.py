"""Provisioning: install and start Centrality agents on the hosts of a pyinfra inventory.

``centrality provision INVENTORY.py`` runs the pyinfra deploy ``provision/deploy.py``
on every host of the inventory, then waits until each host's agent is live on the
control plane; ``centrality deprovision`` runs ``provision/remove.py`` and revokes
the agents' keys. See ``docs/provisioning.md``.

One concern per module:

    settings.py   host data -> per-host settings and the file layout under the prefix (pure)
    hoststate.py  what the host-state fact prints, parsed (pure)
    service.py    the systemd unit and the fallback supervisor script (pure text)
    wheel.py      build (and cache) the agent wheel uploaded to hosts
    tokens.py     a fresh join string per host, via the operator request `token create`
    facts.py      the pyinfra fact reading a host's state in one round trip
    ops.py        the pyinfra operations that are not stock pyinfra (join, agent settings)
    deploy.py     the pyinfra deploy: Python, virtualenv, wheel, join, service
    remove.py     the pyinfra deploy that stops and removes an agent
    inventory.py  load a pyinfra inventory file and apply --limit
    reasons.py    one-line failure reasons (unreachable, auth failed, ...) (pure)
    events.py     the JSON-lines events the worker sends to the CLI
    worker.py     the pyinfra run, in its own process (gevent), emitting events
    runner.py     the CLI side: wheel, worker, confirmation, waiting for live agents
    progress.py   the progress display on stderr
    results.py    per-host results: the final table, JSON and summary

Only ``facts``, ``ops``, ``deploy``, ``remove``, ``inventory`` and ``worker`` import
pyinfra, and only the worker process imports them: ``centrality --help`` and the CLI
process never do.
"""
