#!/usr/bin/env bash
# Idempotently install what the real-browser test needs and print where it is:
#   Debian's chromium (apt-get; needs root, as in CI) and playwright-core from the npm registry
#   (into tests/browser/node_modules, git-ignored; Playwright drives the system Chromium, it never
#   downloads a browser of its own). Last lines: CHROMIUM=<path>, NODE=<path>, PLAYWRIGHT_CORE=<dir>.
# Exit 0 with everything found, non-zero (with the reason on stderr) otherwise.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PLAYWRIGHT_VERSION="1.64.1"   # keep in step with package.json
log() { echo "[browser-setup] $*" >&2; }

chromium_path() { command -v chromium || command -v chromium-browser || true; }
CHROMIUM="${AMDM_CHROMIUM:-$(chromium_path)}"
if [ -z "$CHROMIUM" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    log "installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 || true
    apt-get install -y -q chromium >&2        # as verified here (with its recommended fonts)
    CHROMIUM="$(chromium_path)"
  fi
fi
[ -n "$CHROMIUM" ] || { log "no chromium: install Debian's 'chromium' package (apt-get install chromium)"; exit 1; }

NODE="$(command -v node || true)"
[ -n "$NODE" ] || { log "no node: install Node.js (Debian: apt-get install nodejs npm)"; exit 1; }

if [ ! -f "$HERE/node_modules/playwright-core/package.json" ] || \
   ! grep -q "\"version\": \"$PLAYWRIGHT_VERSION\"" "$HERE/node_modules/playwright-core/package.json"; then
  command -v npm >/dev/null || { log "no npm: install Node.js's npm"; exit 1; }
  log "installing playwright-core@$PLAYWRIGHT_VERSION (npm, no browser download)"
  (cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --no-package-lock \
      --loglevel=error >&2)
fi

echo "CHROMIUM=$CHROMIUM"
echo "NODE=$NODE"
echo "PLAYWRIGHT_CORE=$HERE/node_modules/playwright-core"
