#!/usr/bin/env bash
# Build libopus 1.5.2 with its deep post-filters (LACE/NoLACE, --enable-osce) and its `opus_demo`, locally (never
# system-wide), for `neurocodec eval --baseline nolace`. Debian 12's libopus is 1.3.1, without them.
#
#   bash tools/build_opus15.sh [DEST]      # DEST default ~/.cache/neurocodec/opus-1.5; a few minutes on 2 cores
#
# Source: Debian trixie's opus 1.5.2 release tarball from the Debian archive (it already holds the LACE/NoLACE
# weights, dnn/*_data.c: nothing else is downloaded). eval finds DEST/opus_demo, or $NEUROCODEC_OPUS_DEMO.
set -euo pipefail
DEST=${1:-$HOME/.cache/neurocodec/opus-1.5}
URL=https://deb.debian.org/debian/pool/main/o/opus/opus_1.5.2.orig.tar.gz
SHA256=65c1d2f78b9f2fb20082c38cbe47c951ad5839345876e46941612ee87f9a7ce1
mkdir -p "$DEST"
cd "$DEST"
if [ ! -x opus_demo ]; then
    curl -fsSL -o opus.tar.gz "$URL"
    echo "$SHA256  opus.tar.gz" | sha256sum -c --quiet
    rm -rf src && mkdir src && tar -xzf opus.tar.gz -C src --strip-components=1
    (cd src && ./configure --enable-osce --disable-shared --disable-doc -q \
        && make -j"$(nproc)" opus_demo >/dev/null)
    cp src/opus_demo opus_demo
fi
./opus_demo 2>&1 | head -1 || true
echo "built $DEST/opus_demo"
