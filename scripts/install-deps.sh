#!/usr/bin/env bash
# Installs the system packages the build and the tests use, only those missing.
#   build (what `cargo build` needs):
#     g++          — compiles RocksDB (rocksdb crate) and librdkafka (rdkafka crate);
#     make         — runs librdkafka's build;
#     libclang-dev — bindgen generates the RocksDB bindings;
#     libssl-dev, pkg-config — librdkafka speaks TLS and SASL/SCRAM with OpenSSL;
#     protobuf-compiler, libprotobuf-dev — etcd-client generates its gRPC client from
#                  etcd's .proto files (protoc, and the well-known types they import).
#   test (what the tests need besides the build):
#     prometheus   — a real Prometheus server scrapes a running job in the tests;
#     chromium     — a headless browser renders the JobManager's web UI in the tests;
#     openssl      — test certificates (scripts/cluster-certs.sh, the SASL_SSL Kafka listener);
#     strace       — a test traces a job's fsync and rename calls (checkpoint durability);
#     etcd-server  — the coordination service of JobManager high availability (tests start
#                    their own etcd from it);
#     iproute2     — `ip netns`: the multi-host tests put each process on a test host of its own;
#     gdb          — a test process that hangs past its deadline is reported with its threads' stacks.
# Java and the Kafka jars are not installed here: scripts/kafka-local.sh installs
# them on first use (scripts/lib/common.sh), and scripts/docker-images.sh the
# Docker engine.
# Debian/Ubuntu (apt). Runs apt as root, or through sudo.
#
# Usage: scripts/install-deps.sh [build|all]
#   build   only the build dependencies (scripts/demo.sh)
#   all     build and test dependencies (the default; scripts/test.sh)
set -euo pipefail

group=${1:-all}
case "$group" in
  build | all) ;;
  *) echo "usage: $0 [build|all]" >&2; exit 2 ;;
esac

missing=()
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
# librdkafka is built with OpenSSL (TLS and SASL/SCRAM to Kafka).
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
if [ "$group" = all ]; then
  command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v strace >/dev/null 2>&1 || missing+=(strace)
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  command -v gdb >/dev/null 2>&1 || missing+=(gdb)
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything present ($group)"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${missing[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "error: missing ${missing[*]}; run this script as root or install them yourself" >&2
    exit 1
  fi
fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's prometheus package starts a system service; the tests run their
# own server. Only right after installing it (a running test's server is
# left alone otherwise).
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  if command -v systemctl >/dev/null 2>&1; then $sudo systemctl stop prometheus >/dev/null 2>&1 || true; fi
  $sudo pkill -x prometheus >/dev/null 2>&1 || true
fi
echo "install-deps: done"
