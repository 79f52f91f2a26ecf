#!/usr/bin/env bash
# Build the container images of ess-router and of the ess-standin test stand-in: statically
# linked binaries of this repository on an empty (FROM scratch) base, so nothing is pulled and
# the build works offline.
#
#   scripts/build-images.sh [--profile image|release|dev] [--from DIR]
#
# --profile   cargo profile of the binaries. `image` (default) is release without fat LTO and
#             builds in a fraction of the time; `release` is the fully optimised build.
# --from DIR  use ess-router and ess-standin already built in DIR when both are statically
#             linked (the tests under .ci/run, whose whole build is static); otherwise build.
# Tags come from ESS_ROUTER_IMAGE (default ess-router:dev) and ESS_STANDIN_IMAGE (default
# ess-standin:test). Progress goes to stderr; the two tags built are printed on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=image
from=
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --profile=*) profile="${1#--profile=}"; shift ;;
    --from) from="${2:?--from needs a directory}"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-images: error: unknown argument $1" >&2; exit 2 ;;
  esac
done
router_image="${ESS_ROUTER_IMAGE:-ess-router:dev}"
standin_image="${ESS_STANDIN_IMAGE:-ess-standin:test}"
cargo="${CARGO:-cargo}"

static_bin() { # path
  [ -x "$1" ] && ! readelf --program-headers "$1" | grep -q INTERP
}

if [ -n "$from" ] && static_bin "$from/ess-router" && static_bin "$from/ess-standin"; then
  out="$from"
  echo "build-images: using the static binaries in $out" >&2
else
  # An explicit --target keeps the static build in target/<triple>/ and its RUSTFLAGS off the
  # build scripts, so the shared target directory's normal builds are not invalidated.
  triple="$(rustc -vV | sed -n 's/^host: //p')"
  echo "build-images: building static binaries (profile $profile, target $triple)" >&2
  RUSTFLAGS="-C target-feature=+crt-static" \
    "$cargo" build --quiet --profile "$profile" --target "$triple" \
    -p ess-router --bin ess-router -p ess-standin --bin ess-standin
  # Wherever the target directory is (CARGO_TARGET_DIR, .cargo/config.toml); cargo names the
  # dev profile's directory "debug".
  target_dir="$("$cargo" metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
  out="$target_dir/$triple/$profile"
  if [ "$profile" = dev ]; then out="$target_dir/$triple/debug"; fi
fi

# A dynamically linked binary would fail in the empty image with a bare "no such file or
# directory" from the kernel: refuse it here with a reason instead.
for bin in ess-router ess-standin; do
  if readelf --program-headers "$out/$bin" | grep -q INTERP; then
    echo "build-images: error: $out/$bin is dynamically linked; the image needs a static binary" >&2
    exit 1
  fi
done

# The build context holds only the binary and its Dockerfile: the repository with its target
# directory would be tens of gigabytes to send to the daemon.
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT

build() { # crate binary tag
  rm -rf "${context:?}"/*
  cp "$1/Dockerfile" "$out/$2" "$context/"
  echo "build-images: building $3" >&2
  # Its output only on failure: the legacy builder warns on every build that it is deprecated.
  if ! log="$(docker build --quiet --tag "$3" "$context" 2>&1)"; then
    echo "$log" >&2
    echo "build-images: error: docker build of $3 failed" >&2
    exit 1
  fi
  echo "$3"
}
build router ess-router "$router_image"
build standin ess-standin "$standin_image"
