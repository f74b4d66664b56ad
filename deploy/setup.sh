#!/usr/bin/env bash
# Installs what vitals needs on a fresh Debian machine: Java 17 + Maven (the local Kafka),
# Prometheus/promtool (the observability checks), Chromium (the report's browser check), a Python
# venv with vitals and its test tools,
# and the Kafka broker jars (resolved from Maven Central, cached).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
if [ "${VITALS_SKIP_PROMETHEUS:-0}" != "1" ]; then
  command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
fi
# headless Chromium renders the HTML report in the tests (and docs/report.png with VITALS_DOCS_SCREENSHOT=1)
if [ "${VITALS_SKIP_CHROMIUM:-0}" != "1" ]; then
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium fonts-dejavu-core)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = "0" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o Acquire::Retries=5 update -qq
    apt-get -o Acquire::Retries=5 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
    # the Debian prometheus package starts a service on :9090 where it can; tests run their own
    if command -v systemctl >/dev/null 2>&1; then systemctl stop prometheus 2>/dev/null || true; fi
    pkill -x prometheus 2>/dev/null || true
  else
    echo "setup: please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

# PyPI downloads are large (chdb's engine is ~180 MB) and the link to the registry can drop
# mid-download: pip resumes a broken download itself, and the whole install is retried (finished
# downloads come from pip's cache)
. deploy/retry.sh
python3 -I -m venv .venv
retry 5 .venv/bin/python -I -m pip install -q --timeout 60 --upgrade pip
# the distribution was called `vitals` before (a name PyPI gives another project): an older install goes
.venv/bin/python -I -m pip uninstall -q -y vitals 2>/dev/null || true
retry 5 .venv/bin/python -I -m pip install -q --timeout 60 --resume-retries 20 -e '.[test]'
bash deploy/kafka/kafka.sh jars >/dev/null
echo "setup: ready (.venv, Kafka jars in ~/.cache/vitals)" >&2
