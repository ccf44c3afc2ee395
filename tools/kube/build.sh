#!/usr/bin/env bash
# Builds (or reuses) the local Kubernetes control plane that rlscale's real-API-server tests run
# against: one binary, `kube`, holding kube-apiserver, kube-controller-manager, an embedded etcd
# and kubectl, compiled from the published Go modules pinned in tools/kube/go.mod; plus the Gateway
# API HTTPRoute CRD, read from the pinned sigs.k8s.io/gateway-api module. Nothing is downloaded
# but Go modules (through the Go module proxy), and nothing is written into the repository.
#
# Output: $RLSCALE_KUBE_CACHE/<key>/{kube,httproutes.yaml}, where <key> is the Kubernetes version
# and a hash of the Go sources, the pins and the link flags, so a changed pin builds anew and an
# unchanged one is reused. The last line printed is that directory. Go's own module and build caches
# (GOMODCACHE, GOCACHE) make a rebuild after a pin change much cheaper than the first build.
#
# `build.sh --cached` builds nothing: it prints the directory if the pinned build is there and
# exits with 3 if it is not (the tests ask this way).
#
# Environment: GO (default: go on PATH, else /usr/local/go/bin/go); RLSCALE_KUBE_CACHE (default
# ~/.cache/rlscale/kube); RLSCALE_KUBE_BUILD_JOBS (go build -p, default 2, at nice 5: on a
# shared 2-core machine -p 1 took about twice as long).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
kubernetes_version=v1.37.2
gateway_api_version=v1.6.3
go_bin="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
cache_root="${RLSCALE_KUBE_CACHE:-$HOME/.cache/rlscale/kube}"
jobs="${RLSCALE_KUBE_BUILD_JOBS:-2}"

[ -x "$go_bin" ] || { echo "build.sh: no Go toolchain (set GO=/path/to/go; Go >= 1.26 needed)" >&2; exit 1; }
version_pkg=k8s.io/component-base/version
minor="${kubernetes_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w -X $version_pkg.gitVersion=$kubernetes_version -X $version_pkg.gitMajor=1 -X $version_pkg.gitMinor=$minor -X $version_pkg.gitTreeState=clean"
# The key: what the output is made of (sources, pins, link flags), not this script's comments.
key="$kubernetes_version-$( (cd "$here" && cat go.mod go.sum ./*.go; echo "$gateway_api_version $ldflags") | sha256sum | cut -c1-12)"

out="$cache_root/$key"
if [ -x "$out/kube" ] && [ -s "$out/httproutes.yaml" ]; then
	echo "build.sh: reusing $out" >&2
	echo "$out"
	exit 0
fi
if [ "${1:-}" = --cached ]; then
	echo "build.sh: not built yet: $out (run bash tools/kube/build.sh)" >&2
	exit 3
fi
mkdir -p "$out"
start=$(date +%s)
echo "build.sh: building Kubernetes $kubernetes_version control plane into $out (go build -p $jobs)" >&2
(cd "$here" && nice -n 5 "$go_bin" build -p "$jobs" -trimpath -ldflags "$ldflags" -o "$out/kube.partial" .)
mv "$out/kube.partial" "$out/kube"

# go mod download -json reports its failure inside the JSON (an "Error" field): show it
if ! download="$(cd "$here" && "$go_bin" mod download -json "sigs.k8s.io/gateway-api@$gateway_api_version" 2>&1)"; then
	echo "build.sh: cannot download sigs.k8s.io/gateway-api@$gateway_api_version (is the Go module proxy reachable? GOPROXY=$("$go_bin" env GOPROXY)):" >&2
	echo "$download" >&2
	exit 1
fi
gateway_dir="$(printf '%s\n' "$download" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
crd="$gateway_dir/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"
[ -s "$crd" ] || { echo "build.sh: no HTTPRoute CRD at $crd" >&2; exit 1; }
cp "$crd" "$out/httproutes.yaml.partial"
mv "$out/httproutes.yaml.partial" "$out/httproutes.yaml"
echo "build.sh: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
