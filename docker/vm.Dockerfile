# A simulated VM for compose.yaml: Debian with OpenSSH sshd and Python 3 (with venv),
# and no systemd, like most containers, so the agent runs under the fallback
# supervisor. `centrality provision inventories/compose.py` installs the agent.
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      openssh-server python3 python3-venv ca-certificates procps \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd /root/.ssh \
 && chmod 700 /root/.ssh

COPY vm-entrypoint.sh /usr/local/bin/vm-entrypoint
RUN chmod 755 /usr/local/bin/vm-entrypoint

EXPOSE 22
ENTRYPOINT ["/usr/local/bin/vm-entrypoint"]
