# Centrality with its control-plane and provisioning extras: the image of the
# `controlplane` and `provisioner` services in compose.yaml.
#
# The agent wheel that provisioning uploads to hosts is built here too (there is no
# PyPI release), and named by $CENTRALITY_AGENT_WHEEL for `centrality provision`.
FROM python:3.11-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends openssh-client \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY centrality_core centrality_core/
COPY centrality_cli centrality_cli/
COPY control_plane control_plane/
COPY agent_runtime agent_runtime/
COPY tui tui/
COPY provision provision/
COPY inventories inventories/

RUN pip install --no-cache-dir ".[server,provision]" \
 && pip wheel --no-cache-dir --no-deps -w /opt/centrality/wheels . \
 && ln -s /opt/centrality/wheels/centrality-*.whl /opt/centrality/agent.whl

ENV CENTRALITY_AGENT_WHEEL=/opt/centrality/agent.whl \
    PYTHONUNBUFFERED=1

EXPOSE 8022
CMD ["centrality", "server", "--listen", "0.0.0.0:8022"]
