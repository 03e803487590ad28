# HAProxy from Debian's package (the version the tests run: bookworm's 2.6), with
# the repository's docker/haproxy.cfg; compose.yaml's `haproxy` service sets the
# addresses it reads from the environment.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/*
COPY haproxy.cfg /etc/haproxy/haproxy.cfg
EXPOSE 8022
USER haproxy
# -W: master-worker (a reload re-reads the file); -db: in the foreground, logging to stdout.
CMD ["haproxy", "-W", "-db", "-f", "/etc/haproxy/haproxy.cfg"]
