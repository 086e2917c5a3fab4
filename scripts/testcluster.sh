#!/bin/sh
# A multi-host test cluster on one machine: N network namespaces joined by a bridge.
#
#   scripts/testcluster.sh up N      create test hosts mpiml-h1 .. mpiml-hN, write a hostfile
#   scripts/testcluster.sh down      remove everything "up" created (safe to repeat)
#   scripts/testcluster.sh status    list the test hosts, their addresses and processes
#   scripts/testcluster.sh env       print the mpiexec flags and environment for this cluster
#
# Layout (needs root and iproute2):
#   root namespace:  bridge mpiml-br0 = $SUBNET.1/24 (mpiexec listens here)
#   host i:          namespace mpiml-hI, interface mpiml0 = $SUBNET.(10+I)/24, loopback up,
#                    joined to the bridge by the veth pair mpiml-vI <-> mpiml0
# Nothing is routed or forwarded: the only addresses a test host has are its own,
# those of the other test hosts, the bridge, and loopback.
#
# Environment:
#   MPIML_CLUSTER_SUBNET  first three octets of the private /24 (default 10.213.7)
#   MPIML_CLUSTER_DIR     where the hostfile and the host map go (default /tmp/mpiml-testcluster)
#   MPIML_CLUSTER_SLOTS   slots per host in the hostfile (default 2)
#
# Run MPI programs on it with scripts/cluster-launcher (see "Running on a cluster" in README.md):
#   eval "$(scripts/testcluster.sh env)"
#   mpiexec $MPIML_CLUSTER_MPIEXEC_FLAGS -n 4 python apps/matmul.py --n 512 --check
set -eu

PREFIX=mpiml
BRIDGE=$PREFIX-br0
SUBNET=${MPIML_CLUSTER_SUBNET:-10.213.7}
DIR=${MPIML_CLUSTER_DIR:-/tmp/mpiml-testcluster}
SLOTS=${MPIML_CLUSTER_SLOTS:-2}
MAX_HOSTS=64
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "testcluster: $*" >&2; exit 1; }

need_root() {
    command -v ip >/dev/null 2>&1 || die "the 'ip' command (iproute2) is not installed"
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces and a bridge are created)"
}

hosts() {  # the namespaces this script created, in order
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-h[0-9]+\$" | sort -t h -k 2 -n || true
}

host_addr() { echo "$SUBNET.$((10 + $1))"; }

cmd_up() {
    n=${1:-}
    case $n in ''|*[!0-9]*) die "usage: testcluster.sh up N (N a positive integer, got '${n}')";; esac
    [ "$n" -ge 1 ] && [ "$n" -le $MAX_HOSTS ] || die "N must be between 1 and $MAX_HOSTS, got $n"
    need_root
    [ -z "$(hosts)" ] || die "a test cluster is already up (run: $0 down)"
    trap 'echo "testcluster: up failed; removing what was created" >&2; cmd_down >/dev/null 2>&1' EXIT

    ip link add "$BRIDGE" type bridge
    ip addr add "$SUBNET.1/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    mkdir -p "$DIR"
    : > "$DIR/hosts.map"
    : > "$DIR/hosts"
    i=1
    while [ "$i" -le "$n" ]; do
        ns=$PREFIX-h$i
        addr=$(host_addr "$i")
        ip netns add "$ns"
        ip link add "$PREFIX-v$i" type veth peer name "$PREFIX-p$i"
        ip link set "$PREFIX-p$i" netns "$ns"
        ip -n "$ns" link set "$PREFIX-p$i" name mpiml0
        ip -n "$ns" addr add "$addr/24" dev mpiml0
        ip -n "$ns" link set lo up
        ip -n "$ns" link set mpiml0 up
        ip link set "$PREFIX-v$i" master "$BRIDGE"
        ip link set "$PREFIX-v$i" up
        echo "$addr $ns" >> "$DIR/hosts.map"
        echo "$addr:$SLOTS" >> "$DIR/hosts"
        i=$((i + 1))
    done
    # veth links come up asynchronously: wait until every host's link is up
    for ns in $(hosts); do
        t=0
        until ip -n "$ns" -o link show dev mpiml0 | grep -q LOWER_UP; do
            t=$((t + 1))
            [ "$t" -lt 50 ] || die "the link of host $ns did not come up"
            sleep 0.1
        done
    done
    trap - EXIT
    echo "testcluster: $n hosts up; hostfile $DIR/hosts"
    cat "$DIR/hosts"
}

cmd_down() {
    need_root
    for ns in $(hosts); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
    done
    # root-side veth ends vanish with their peers; remove any left behind by a failed "up"
    for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' \
                  | grep -E "^$PREFIX-[vp][0-9]+\$" || true); do
        ip link del "$link" 2>/dev/null || true
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    rm -f "$DIR/hosts" "$DIR/hosts.map"
    rmdir "$DIR" 2>/dev/null || true
    echo "testcluster: down"
}

cmd_status() {
    command -v ip >/dev/null 2>&1 || die "the 'ip' command (iproute2) is not installed"
    if [ -z "$(hosts)" ]; then echo "testcluster: down"; return 0; fi
    echo "bridge $BRIDGE: $(ip -4 -o addr show dev "$BRIDGE" 2>/dev/null | awk '{print $4}')"
    for ns in $(hosts); do
        addr=$(ip -n "$ns" -4 -o addr show dev mpiml0 2>/dev/null | awk '{print $4}')
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        echo "$ns: ${addr:-no address}  processes: ${pids:-none}"
    done
    [ -f "$DIR/hosts" ] && echo "hostfile: $DIR/hosts"
    return 0
}

cmd_env() {
    [ -f "$DIR/hosts" ] || die "no test cluster is up (run: $0 up N)"
    cat <<ENV
export MPIML_CLUSTER_HOSTFILE='$DIR/hosts'
export MPIML_CLUSTER_MPIEXEC_FLAGS='-f $DIR/hosts -launcher ssh -launcher-exec $HERE/cluster-launcher -iface $BRIDGE -localhost $SUBNET.1'
ENV
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) echo "usage: $0 up N | down | status | env" >&2; exit 2 ;;
esac
