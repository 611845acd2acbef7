# The fleet cases (issue 14): `multiple` builds an architecture of eight
# images from two URLs on a loopback server, four from each (qcow2 and raw
# outputs, sizes from 1G to 4G), with -j 1, -j 2 and -j 8, against a shell
# loop doing per image what the Python tool does: curl, sha256sum, qemu-img
# convert, resize, and for qcow2 amend to compat 1.1 and check. Every run
# starts with an empty cache (it is in $OUT). Both inputs are ext4 file
# systems: A, /usr/share/doc in 512 MiB as a zlib-compressed qcow2; B,
# /usr/share/man in 256 MiB as a plain qcow2.
#
# A server of its own counts the requests: $DIR/fleet-jN.gets says, for each
# run of ours, how many GETs each URL had (the goal: one). Note on the
# qemu+sync column: it syncs the loop's last image only, while ours syncs
# all eight; the qemu column (no sync at all) is the stricter comparison.
FLEET_A="$DIR/fleet-a.qcow2"
FLEET_B="$DIR/fleet-b.qcow2"
fleet_fs() { # fleet_fs SIZE SOURCE OUT [-c]
  local size=$1 src=$2 out=$3; shift 3
  truncate -s "$size" "$out.raw"
  mkfs.ext4 -q -F -d "$src" "$out.raw"
  qemu-img convert "$@" -O qcow2 "$out.raw" "$out.tmp"
  rm -f "$out.raw"
  mv "$out.tmp" "$out"
}
if selected fleet-j1 || selected fleet-j2 || selected fleet-j8; then
  [ -f "$FLEET_A" ] || fleet_fs 512M /usr/share/doc "$FLEET_A" -c
  [ -f "$FLEET_B" ] || fleet_fs 256M /usr/share/man "$FLEET_B"
  FLEET_LOG="$DIR/fleet-http.log"
  : >"$FLEET_LOG"
  "$DIR/httpserve" -dir "$DIR" -log "$FLEET_LOG" >"$DIR/fleet-http.addr" 2>"$DIR/fleet-http.err" &
  FLEET_SERVER=$!
  FLEET_PREV_TRAP=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
  # shellcheck disable=SC2064
  trap "$FLEET_PREV_TRAP; kill $FLEET_SERVER 2>/dev/null || true" EXIT
  for _ in $(seq 50); do [ -s "$DIR/fleet-http.addr" ] && break; sleep 0.1; done
  FLEET_URL="http://$(cat "$DIR/fleet-http.addr")"
  FLEET_SUM_A=$(sha256sum "$FLEET_A" | cut -d' ' -f1)
  FLEET_SUM_B=$(sha256sum "$FLEET_B" | cut -d' ' -f1)
  # key:format:size:input:sha256, in the architecture's order
  FLEET_SPECS="a1:qcow2:1G:fleet-a.qcow2:$FLEET_SUM_A b1:qcow2:512M:fleet-b.qcow2:$FLEET_SUM_B
a2:raw:2G:fleet-a.qcow2:$FLEET_SUM_A b2:raw:1G:fleet-b.qcow2:$FLEET_SUM_B
a3:qcow2:3G:fleet-a.qcow2:$FLEET_SUM_A b3:qcow2:2G:fleet-b.qcow2:$FLEET_SUM_B
a4:raw:4G:fleet-a.qcow2:$FLEET_SUM_A b4:raw:3G:fleet-b.qcow2:$FLEET_SUM_B"
  FLEET_ARCH="$DIR/fleet.yml"
  {
    echo "owner: bench"
    echo "images:"
    for spec in $FLEET_SPECS; do
      IFS=: read -r key format size input sum <<<"$spec"
      printf '  %s:\n    name: %s\n    size: %s\n    format: %s\n    input:\n      url: %s/%s\n      checksum: {type: sha256, value: %s}\n' \
        "$key" "$key" "$size" "$format" "$FLEET_URL" "$input" "$sum"
    done
  } >"$FLEET_ARCH"
  export FLEET_SPECS FLEET_URL FLEET_ARCH FLEET_LOG
fi

fleet_loop() { # what the Python tool does, image after image
  mkdir -p "$OUT/tmp" "$OUT/fleet"
  local spec key format size input sum in out
  for spec in $FLEET_SPECS; do
    IFS=: read -r key format size input sum <<<"$spec"
    in="$OUT/tmp/$input" out="$OUT/fleet/$key.$format"
    curl -fsS -o "$in" "$FLEET_URL/$input" &&
      echo "$sum  $in" | sha256sum -c --quiet - &&
      qemu-img convert -O "$format" "$in" "$out" &&
      qemu-img resize -q -f "$format" "$out" "$size" || return 1
    if [ "$format" = qcow2 ]; then
      qemu-img amend -q -f qcow2 -o compat=v3 "$out" && qemu-img check -q "$out" || return 1
    fi
    rm -f "$in"
  done
}
fleet_ours() { # fleet_ours JOBS: ours, counting the requests each URL gets
  local before after
  before=$(wc -l <"$FLEET_LOG")
  "$BIN" multiple "$FLEET_ARCH" -od "$OUT/fleet" -j "$1" --cache-dir "$OUT/cache" -q || return 1
  after=$(wc -l <"$FLEET_LOG")
  tail -n $((after - before)) "$FLEET_LOG" | sort | uniq -c | tr '\n' ';' >>"$DIR/fleet-j$1.gets"
  echo >>"$DIR/fleet-j$1.gets"
}
# One function per -j: the case strings are split on white space.
fleet_ours_1() { fleet_ours 1; }
fleet_ours_2() { fleet_ours 2; }
fleet_ours_8() { fleet_ours 8; }
export -f fleet_loop fleet_ours fleet_ours_1 fleet_ours_2 fleet_ours_8
rm -f "$DIR"/fleet-j*.gets

CASES+=(
  "fleet-j1|bash -c fleet_ours_1|bash -c fleet_loop|$OUT/fleet/b4.raw"
  "fleet-j2|bash -c fleet_ours_2|bash -c fleet_loop|$OUT/fleet/b4.raw"
  "fleet-j8|bash -c fleet_ours_8|bash -c fleet_loop|$OUT/fleet/b4.raw"
)
