#!/usr/bin/env bash
# Makes a cluster CA and node certificates for Sluice's internal mutual TLS
# (security.ssl.internal.*), with openssl.
#
# Usage: scripts/cluster-certs.sh DIR [NODE...]
#   DIR/ca.pem            the cluster CA's certificate (security.ssl.internal.trust-cert)
#   DIR/ca-key.pem        its private key: keep it off the cluster's hosts
#   DIR/NODE.pem          a node certificate signed by the CA (security.ssl.internal.cert)
#   DIR/NODE-key.pem      its private key, mode 0600 (security.ssl.internal.key)
# NODE defaults to "node". An existing CA in DIR is reused, so nodes can be
# added later: scripts/cluster-certs.sh DIR tm-3
# NODE=SANS adds subject alternative names, for a certificate clients check
# by name (the REST API, security.ssl.rest.*):
#   scripts/cluster-certs.sh DIR rest=IP:10.0.0.5,DNS:jm.example
# Certificates are valid for 825 days; keys are ECDSA P-256.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 DIR [NODE...]" >&2
  exit 2
fi
dir=$1
shift
nodes=("$@")
[ ${#nodes[@]} -gt 0 ] || nodes=(node)
command -v openssl >/dev/null || { echo "error: openssl not found (apt-get install openssl)" >&2; exit 1; }

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

if [ ! -f "$dir/ca.pem" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem" 2>/dev/null
  openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days 825 -subj "/CN=Sluice cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"
  chmod 644 "$dir/ca.pem"
  echo "made the cluster CA: $dir/ca.pem (its key $dir/ca-key.pem signs new nodes; keep it safe)"
fi

for spec in "${nodes[@]}"; do
  node=${spec%%=*}
  sans=""
  [ "$node" != "$spec" ] && sans=",${spec#*=}"
  case "$node" in *[!A-Za-z0-9._-]*|'') echo "error: bad node name '$node' (letters, digits, . _ -)" >&2; exit 2 ;; esac
  ext=$(mktemp)
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=DNS:$node,DNS:sluice-cluster$sans" >"$ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/$node-key.pem" 2>/dev/null
  openssl req -new -key "$dir/$node-key.pem" -subj "/CN=$node" -out "$dir/$node.csr"
  openssl x509 -req -in "$dir/$node.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days 825 -sha256 -extfile "$ext" -out "$dir/$node.pem" 2>/dev/null
  rm -f "$dir/$node.csr" "$ext"
  chmod 644 "$dir/$node.pem"
  chmod 600 "$dir/$node-key.pem"
  echo "made $dir/$node.pem and $dir/$node-key.pem"
done
