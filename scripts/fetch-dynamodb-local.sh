#!/usr/bin/env bash
# Fetch DynamoDB Local (AWS's emulator) into .cache/dynamodb-local/emulator, once.
# It ships inside the npm package amplify-dynamodb-simulator under emulator/: we `npm pack` the
# package (npm checks its integrity) and unpack only that folder, instead of `npm install`, which
# would bring ~350 MB of unrelated dependencies.
set -euo pipefail
version="${DYNAMODB_SIMULATOR_VERSION:-2.9.30}"
dest="${1:-.cache/dynamodb-local}"
if [ -f "$dest/emulator/DynamoDBLocal.jar" ]; then
  exit 0
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java is missing: DynamoDB Local needs a Java 17 runtime (apt-get install openjdk-17-jre-headless)." >&2
  exit 1
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "npm is missing: it is used to fetch DynamoDB Local (apt-get install npm)." >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "Fetching DynamoDB Local (amplify-dynamodb-simulator@$version, ~56 MB)..."
(cd "$tmp" && npm pack --silent "amplify-dynamodb-simulator@$version" >/dev/null)
tar -xzf "$tmp"/amplify-dynamodb-simulator-*.tgz -C "$tmp" package/emulator
mkdir -p "$dest"
rm -rf "$dest/emulator"
mv "$tmp/package/emulator" "$dest/emulator"
echo "DynamoDB Local is in $dest/emulator"
