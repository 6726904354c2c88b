#!/usr/bin/env bash
# Optional extras, named by purpose. Usage: scripts/setup-extra.sh mbrola
#   mbrola: the MBROLA diphone synthesiser with US/UK English voices (us1 us2 us3 en1), used by
#           `corpus synth` as more voices when present. Debian ships them in contrib/non-free and
#           their licence allows use with the mbrola program only, non-commercially, never
#           redistribution: they stay optional and nothing in the default pipeline needs them.
set -euo pipefail
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
for extra in "$@"; do
  case "$extra" in
    mbrola)
      src=/etc/apt/sources.list.d/debian-contrib-nonfree.sources
      if [ ! -f "$src" ]; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' | $SUDO tee "$src" >/dev/null
      fi
      $SUDO apt-get update -q
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
      ;;
    *) echo "setup-extra: unknown extra '$extra' (known: mbrola)" >&2; exit 2;;
  esac
done
