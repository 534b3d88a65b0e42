# Shared settings for the real-node scripts (containerd, kubelet, kube-proxy, cluster DNS).
# Sourced, not executed; sources the control plane's lib.sh for the cache layout and versions.
# shellcheck shell=bash disable=SC2034

NODE_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../controlplane/lib.sh
source "$NODE_LIB_DIR/../controlplane/lib.sh"

# The kubelet and kube-proxy are built from the control plane's source with its Go, so they
# share its version stamp; NODE_RECIPE is bumped when the node's build recipe changes.
NODE_RECIPE=1
NODE_STAMP="$K8S_STAMP node=$NODE_RECIPE"
NODE_BINARIES=(kubelet kube-proxy)
NODE_APT_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack python3 gcc libc6-dev busybox-static)

# Cached across runs: the node binaries' stamp, the pause image tarball and containerd's root
# (its content store and snapshots, so images imported once stay imported).
NODE_CACHE="$WEIR_CACHE/node"
NODE_IMAGES="$NODE_CACHE/images"
CONTAINERD_ROOT="$NODE_CACHE/containerd"
# A running node: configs, certificates, kubelet root dir, logs and pids. Removed by down.sh.
NODE_STATE="${WEIR_NODE_STATE:-$NODE_CACHE/state}"
# containerd's runtime state and socket (tmpfs, like /run/containerd).
CONTAINERD_STATE="${WEIR_CONTAINERD_STATE:-/run/weir-containerd}"
CONTAINERD_SOCK="$CONTAINERD_STATE/containerd.sock"

NODE_NAME="${WEIR_NODE_NAME:-weir-node}"
# The pod network: the CNI bridge and its gateway address, which is also the node's address
# (kubelet --node-ip, the apiserver's advertise address) and the cluster DNS server's, so pods
# reach everything on the host through it.
NODE_BRIDGE="${WEIR_NODE_BRIDGE:-weir0}"
NODE_POD_CIDR="${WEIR_NODE_POD_CIDR:-10.88.0.0/16}"
NODE_IP="${WEIR_NODE_IP:-10.88.0.1}"
# Locally administered; the last four bytes are NODE_IP's.
NODE_BRIDGE_MAC="$(IFS=. read -r a b c d <<<"$NODE_IP" && printf '02:42:%02x:%02x:%02x:%02x' "$a" "$b" "$c" "$d")"
CLUSTER_DOMAIN=cluster.local
# Must lie in the apiserver's --service-cluster-ip-range (10.0.0.0/24).
SERVICE_CIDR=10.0.0.0/24
PAUSE_IMAGE=registry.k8s.io/pause:weir-3.4
KUBELET_PORT=10250

ctr_k8s() { ctr --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# Images built here (images.sh): our own Docker daemon, the debootstrap base and the two images
# of the repository's Dockerfile. Tags other than `latest`, so pull policy IfNotPresent uses them.
DOCKER_STATE="${WEIR_DOCKER_STATE:-/run/weir-docker}"
DOCKER_ROOT="$WEIR_CACHE/docker"
DEBIAN_SUITE=bookworm
BASE_IMAGE="weir-debian:$DEBIAN_SUITE"
NODE_WORKER_IMAGE="${WEIR_NODE_WORKER_IMAGE:-weir-worker:e2e}"
NODE_OPERATOR_IMAGE="${WEIR_NODE_OPERATOR_IMAGE:-weir-operator:e2e}"
