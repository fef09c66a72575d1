#!/usr/bin/env bash
# Builds sinkhole-offline-<version>-<os>-<arch>.tar.gz: everything a server needs to run sinkhole with
# no network at all (an air-gapped resolver cannot fetch the 126 MB Node runtime that `npm install`
# of the packed package downloads). Run it on a connected machine of the same OS and CPU architecture
# as the server; the tarball holds the built code, the production dependencies and the pinned Node
# runtime (node_modules/node), the lists, the deployment files and the bundled config.
#   bash scripts/pack-offline.sh [OUTDIR]
# On the server: mkdir -p /opt/sinkhole && tar xzf sinkhole-offline-*.tar.gz -C /opt/sinkhole
#                /opt/sinkhole/bin/sinkhole validate --config /etc/sinkhole/sinkhole.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(cd "${1:-.}" && pwd)
version=$(node -p "require('./package.json').version")
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
npm ci --no-audit --no-fund
npm run build
cp -r bin dist blocklists deploy dashboards sinkhole.yaml exceptions.yaml README.md docs package.json package-lock.json "$stage/"
cp -r node_modules "$stage/"
(cd "$stage" && npm prune --omit=dev --no-audit --no-fund >/dev/null)
"$stage/bin/sinkhole" validate --config "$stage/sinkhole.yaml" >/dev/null
name="sinkhole-offline-$version-$(uname -s | tr 'A-Z' 'a-z')-$(uname -m).tar.gz"
tar czf "$out/$name" -C "$stage" .
echo "$out/$name"
