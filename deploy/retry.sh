# shellcheck shell=bash
# Sourced by the setup scripts: `retry N CMD...` runs CMD up to N times, waiting 5 s, 10 s, ...
# between tries (package registries drop downloads mid-way), then fails loudly.
retry() {
  local tries="$1" attempt
  shift
  for ((attempt = 1; attempt <= tries; attempt++)); do
    if "$@"; then
      return 0
    fi
    echo "retry: $1 failed (attempt $attempt of $tries)" >&2
    if [ "$attempt" -lt "$tries" ]; then
      sleep $((attempt * 5))
    fi
  done
  echo "retry: giving up on: $*" >&2
  return 1
}
