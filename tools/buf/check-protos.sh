#!/usr/bin/env bash
# The wire contract's checks, run by `make proto-check` (and so by CI):
#  1. buf lint on protos/;
#  2. buf breaking: protos/ against the previous committed protos;
#  3. a self-check that (2) can fail at all: a deliberately breaking change to a copy of
#     the protos must be reported, or this script fails.
#
# "The previous committed protos": with uncommitted changes under protos/ (a developer
# at work) that is HEAD; on a clean tree (CI's fresh clone, which has main's full
# history) it is HEAD~1, so the newest commit is checked against the one before it.
# Override with BUF_AGAINST_REF=<git ref> (e.g. the last release tag).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUF=tools/buf/node_modules/.bin/buf

echo "buf lint protos"
"$BUF" lint protos

ref="${BUF_AGAINST_REF:-}"
if [ -z "$ref" ]; then
  if ! git rev-parse --verify -q HEAD >/dev/null 2>&1; then
    ref=""  # not a git checkout (an unpacked tarball): nothing to compare with
  elif ! git diff --quiet HEAD -- protos || [ -n "$(git ls-files --others --exclude-standard protos)" ]; then
    ref=HEAD
  elif git rev-parse --verify -q HEAD~1 >/dev/null; then
    ref=HEAD~1
  fi
fi
if [ -n "$ref" ]; then
  echo "buf breaking protos --against $ref ($(git rev-parse --short "$ref"))"
  "$BUF" breaking protos --against ".git#ref=$ref,subdir=protos"
else
  echo "buf breaking: no earlier commit to compare with; skipped"
fi

# Self-check: remove an RPC from a copy; buf breaking must name it.
copy="$(mktemp -d)"
trap 'rm -rf "$copy"' EXIT
cp -r protos "$copy/protos"
target="$copy/protos/buildcontrol/v1/build_control.proto"
grep -q '^  rpc ListAgents(' "$target" || { echo "self-check: the RPC to remove is gone; update $0" >&2; exit 1; }
sed -i '/^  rpc ListAgents(/d' "$target"
if report="$("$BUF" breaking "$copy/protos" --against protos 2>&1)"; then
  echo "self-check FAILED: buf breaking accepted a removed RPC" >&2
  exit 1
fi
if ! grep -q 'ListAgents' <<<"$report"; then
  echo "self-check FAILED: buf breaking failed without naming ListAgents:" >&2
  echo "$report" >&2
  exit 1
fi
echo "self-check: a removed RPC is caught:"
sed 's/^/  /' <<<"$report"
echo "proto checks passed"
