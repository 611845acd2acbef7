# The record's cases (issue 14, points 4 and 5).
#
# fleetrec-update: a rerun with --update of a 20-image architecture (qcow2
# and raw, 1G to 2G, half from a URL on the loopback server, half from a
# local file) built once beforehand, where nothing changed: it reads the
# record, stats the local input, asks the server once (a conditional HEAD)
# and builds nothing. Goal: under a second. Its qemu columns are the same
# rerun without --update (the seed's "the image exists: keep it"), which
# looks at nothing.
#
# fleetrec-record: what the record costs. Ours hashes, as the record does
# (bench/recordcost: record.HashFile, holes skipped), the eight images of
# the issue's benchmark architecture (fleet.sh's: 1G to 4G, four raw, four
# qcow2), built once beforehand; its qemu columns build those eight images
# (-j 2, cache warm, --overwrite). The ratio is the hashing's share of a
# build's time: an upper bound, since a build hashes each image while it
# checks and syncs it rather than after (goal: 0.10).
FLEETREC="$DIR/fleetrec"
if selected fleetrec-update || selected fleetrec-record; then
  (cd "$ROOT" && go build -o "$DIR/recordcost" ./bench/recordcost)
  mkdir -p "$FLEETREC"
  FLEETREC_IN="$DIR/fleet-b.qcow2" # fleet.sh's input B: /usr/share/man in a 256 MiB ext4
  [ -f "$FLEETREC_IN" ] || fleet_fs 256M /usr/share/man "$FLEETREC_IN"
  FLEETREC_A="$DIR/fleet-a.qcow2"
  [ -f "$FLEETREC_A" ] || fleet_fs 512M /usr/share/doc "$FLEETREC_A" -c
  FLEETREC_URL="http://$(cat "$DIR/httpserve.addr")"

  FLEETREC_ARCH20="$FLEETREC/update.yml"
  {
    echo "owner: bench"
    echo "images:"
    for i in $(seq 1 20); do
      format=qcow2; [ $((i % 2)) = 0 ] && format=raw
      if [ $((i % 4)) -lt 2 ]; then in="url: $FLEETREC_URL/fleet-b.qcow2"; else in="path: $FLEETREC_IN"; fi
      printf '  img%d:\n    name: img%d\n    size: %dG\n    format: %s\n    input:\n      %s\n' "$i" "$i" $((1 + i % 2)) "$format" "$in"
    done
  } >"$FLEETREC_ARCH20"
  if [ ! -s "$FLEETREC/update/SHA256SUMS" ]; then
    echo "fleetrec: building the 20 images the update case reruns over ..." >&2
    "$BIN" multiple "$FLEETREC_ARCH20" -od "$FLEETREC/update" --cache-dir "$FLEETREC/cache" -j 2 --no-sync -q >/dev/null
  fi

  FLEETREC_ARCH8="$FLEETREC/record.yml"
  {
    echo "owner: bench"
    echo "images:"
    for spec in a1:qcow2:1G:fleet-a.qcow2 b1:qcow2:512M:fleet-b.qcow2 a2:raw:2G:fleet-a.qcow2 b2:raw:1G:fleet-b.qcow2 \
      a3:qcow2:3G:fleet-a.qcow2 b3:qcow2:2G:fleet-b.qcow2 a4:raw:4G:fleet-a.qcow2 b4:raw:3G:fleet-b.qcow2; do
      IFS=: read -r key format size input <<<"$spec"
      printf '  %s:\n    name: %s\n    size: %s\n    format: %s\n    input:\n      url: %s/%s\n' "$key" "$key" "$size" "$format" "$FLEETREC_URL" "$input"
    done
  } >"$FLEETREC_ARCH8"
  if [ ! -s "$FLEETREC/record/SHA256SUMS" ]; then
    echo "fleetrec: building the 8 images the record case hashes ..." >&2
    "$BIN" multiple "$FLEETREC_ARCH8" -od "$FLEETREC/record" --cache-dir "$FLEETREC/cache" -j 2 -q >/dev/null
  fi
  FLEETREC_IMAGES=$(cd "$FLEETREC/record" && ls -1 ./*.qcow2 ./*.raw | sed "s|^\./|$FLEETREC/record/|" | tr '\n' ' ')
  export FLEETREC FLEETREC_ARCH20 FLEETREC_ARCH8 FLEETREC_IMAGES
fi
fleetrec_update() { "$BIN" multiple "$FLEETREC_ARCH20" -od "$FLEETREC/update" --cache-dir "$FLEETREC/cache" --update -q; }
fleetrec_keep() { "$BIN" multiple "$FLEETREC_ARCH20" -od "$FLEETREC/update" --cache-dir "$FLEETREC/cache" -q; }
# shellcheck disable=SC2086
fleetrec_hash() { "$DIR/recordcost" $FLEETREC_IMAGES; }
fleetrec_build() { "$BIN" multiple "$FLEETREC_ARCH8" -od "$OUT/record" --cache-dir "$FLEETREC/cache" -j 2 --overwrite -q; }
export -f fleetrec_update fleetrec_keep fleetrec_hash fleetrec_build

CASES+=(
  "fleetrec-update|bash -c fleetrec_update|bash -c fleetrec_keep|$FLEETREC/update/gen-vm-image.json"
  "fleetrec-record|bash -c fleetrec_hash|bash -c fleetrec_build|$OUT/record/b4.raw"
)
