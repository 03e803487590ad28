#!/bin/sh
# Start a simulated VM: authorise the provisioner's key, make host keys, run sshd.
set -eu

KEY=/keys/provisioner.pub

# The `keygen` service writes the key before VMs start; wait a little anyway.
i=0
while [ ! -s "$KEY" ] && [ "$i" -lt 60 ]; do
    sleep 1
    i=$((i + 1))
done
if [ ! -s "$KEY" ]; then
    echo "vm: no $KEY: is the keygen service running?" >&2
    exit 1
fi
install -d -m 700 /root/.ssh
install -m 600 "$KEY" /root/.ssh/authorized_keys

ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e \
    -o PermitRootLogin=prohibit-password \
    -o PasswordAuthentication=no \
    -o KbdInteractiveAuthentication=no
