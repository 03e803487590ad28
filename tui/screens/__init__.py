"""One screen per module: cluster (the fleet), machine, events, help."""
