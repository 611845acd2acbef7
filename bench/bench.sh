#!/usr/bin/env bash
# Times gen-vm-image against qemu-img on the same files in the same run and
# prints medians, ratios (ours / qemu-img's wall time; below 1 is faster) and
# peak RSS. Not a test: machines are noisy, so nothing here asserts a time.
#
#   bench/bench.sh [RUNS [CASE...]]   (default 5 runs of every case)
#
# Needs qemu-img, mkfs.ext4, curl and GNU time. Work files go to $BENCH_DIR
# (default /tmp/gvi-bench): a 4 GiB ext4 file system filled from /usr/share
# (sparse raw), and that image as a zlib-compressed qcow2. The download case
# serves the qcow2 from a loopback HTTP server (bench/httpserve) and times
# the whole job: download, verify, convert, resize to 10G, check.
#
# The registry case (when docker-registry is installed) pushes the qcow2 to
# a docker-registry on loopback as a containerDisk and pulls it back into
# an empty cache (bench/ocipull: the library calls of `single -i oci://`
# before it converts), against `cp` of the file and `sha256sum` of the copy:
# the same bytes moved once and hashed once. Its qemu columns are that cp
# and sha256sum. Afterwards it lists what a push and a pull left on disk:
# one copy of the disk, in the cache.
#
# gen-vm-image fsyncs every image before renaming it into place (nothing
# half-written survives a crash); qemu-img does not sync at all (its target
# cache mode is "unsafe"). So each case is timed twice on qemu's side: as
# qemu-img runs, and followed by `sync` of its output (the same durability
# as ours). Both ratios are printed; the -nosync cases run ours with
# --no-sync, the same work as qemu-img's. Every run starts after a `sync`, so
# that one run's write-back (and the discards of the file it deleted) does
# not land in the next run's time.
set -euo pipefail
RUNS=${1:-5}
shift || true
ONLY=" $* "
DIR=${BENCH_DIR:-/tmp/gvi-bench}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$DIR"
BIN="$DIR/gen-vm-image"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$BIN" ./cmd/gen-vm-image)

RAW="$DIR/fs.raw"
ZQCOW="$DIR/fs-zlib.qcow2"
if [ ! -f "$RAW" ]; then
  echo "building a 4 GiB ext4 image from /usr/share ..." >&2
  truncate -s 4G "$RAW.tmp"
  mkfs.ext4 -q -F -d /usr/share "$RAW.tmp"
  mv "$RAW.tmp" "$RAW"
fi
if [ ! -f "$ZQCOW" ]; then
  echo "compressing it to a zlib qcow2 ..." >&2
  qemu-img convert -c -O qcow2 "$RAW" "$ZQCOW.tmp"
  mv "$ZQCOW.tmp" "$ZQCOW"
fi
ZSUM_FILE="$DIR/fs-zlib.qcow2.sha256"
if [ ! -f "$ZSUM_FILE" ] || [ "$ZSUM_FILE" -ot "$ZQCOW" ]; then
  sha256sum "$ZQCOW" | cut -d' ' -f1 >"$ZSUM_FILE"
fi
ZSUM=$(cat "$ZSUM_FILE")

# A loopback web server for the download case.
(cd "$ROOT" && go build -o "$DIR/httpserve" ./bench/httpserve)
"$DIR/httpserve" -dir "$DIR" >"$DIR/httpserve.addr" 2>"$DIR/httpserve.err" &
SERVER=$!
REGPID=
trap 'kill $SERVER 2>/dev/null || true; [ -z "$REGPID" ] || kill $REGPID 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s "$DIR/httpserve.addr" ] && break; sleep 0.1; done
URL="http://$(cat "$DIR/httpserve.addr")/$(basename "$ZQCOW")"

# A loopback registry for the registry case: docker-registry with its
# storage in $DIR/registry, on the first free port from 15000. The
# registry reads REGISTRY_* variables as configuration: none reach it.
REG=
if command -v docker-registry >/dev/null; then
  (cd "$ROOT" && go build -o "$DIR/ocipull" ./bench/ocipull)
  REGDIR="$DIR/registry"
  rm -rf "$REGDIR"
  mkdir -p "$REGDIR"
  for port in $(seq 15000 15030); do
    cat >"$REGDIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGDIR/storage
http:
  addr: 127.0.0.1:$port
  secret: gvi-bench
EOF
    # shellcheck disable=SC2046
    env $(env | grep -o '^REGISTRY_[A-Za-z0-9_]*' | sed 's/^/-u /') docker-registry serve "$REGDIR/config.yml" >"$REGDIR/log" 2>&1 &
    REGPID=$!
    for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break; sleep 0.1; done
    if kill -0 "$REGPID" 2>/dev/null && curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
      REG=127.0.0.1:$port
      break
    fi
    kill "$REGPID" 2>/dev/null || true
    REGPID=
  done
fi

echo "inputs: $(du -h --apparent-size "$RAW" | cut -f1) raw ($(du -h "$RAW" | cut -f1) allocated), $(du -h "$ZQCOW" | cut -f1) zlib qcow2; $(nproc) cores" >&2

OUT="$DIR/out"
# measure NAME CMD...: runs CMD once, appends "seconds maxrss_kib" to $DIR/NAME.times.
# With BENCH_WARMUP=1 (the default) an untimed run of the same CMD comes
# first: on this VM, a program that writes right after another program's
# large output was deleted runs up to three times slower than after its own
# (the host takes back the memory just freed, and whoever writes next
# faults it in again), so without it each side's time depends on which
# program ran before it. BENCH_WARMUP=0 times the cold case.
measure() {
  local name=$1; shift
  if [ "${BENCH_WARMUP:-1}" = 1 ]; then
    rm -rf "$OUT"; mkdir -p "$OUT"; sync
    "$@" >/dev/null 2>&1 || true
  fi
  rm -rf "$OUT"; mkdir -p "$OUT"; sync
  /usr/bin/time -f "%e %M" -o "$DIR/$name.last" "$@" >/dev/null 2>"$DIR/$name.err" || {
    echo "FAILED: $*" >&2; cat "$DIR/$name.err" >&2; exit 1; }
  cat "$DIR/$name.last" >>"$DIR/$name.times"
}
ratio() { echo "$1 $2" | awk '{print ($2>0)?$1/$2:0}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# The reference flows take their inputs from the environment ($IN; $URL_IN
# and $SUM_IN), since the case strings below are split on white space.
qemu_job() { # the reference flow for `single -i`: convert, resize, amend, check
  qemu-img convert -O qcow2 "$IN" "$OUT/job.qcow2" && qemu-img resize -q "$OUT/job.qcow2" 10G &&
    qemu-img amend -q -f qcow2 -o compat=v3 "$OUT/job.qcow2" && qemu-img check -q "$OUT/job.qcow2"
}
qemu_download_job() { # the reference flow for `single -i URL -ict sha256 -ic HEX`: download, then hash, then the rest
  curl -fsS -o "$OUT/download.qcow2" "$URL_IN" && echo "$SUM_IN  $OUT/download.qcow2" | sha256sum -c --quiet - &&
    IN="$OUT/download.qcow2" qemu_job
}
durable() { # durable FILE CMD...: CMD, then make FILE durable as we do ours
  local file=$1; shift
  "$@" && sync "$file"
}
# registry_job: push as a containerDisk, then pull into an empty cache,
# with a temporary directory of their own. Each push has a timestamp of
# its own (SOURCE_DATE_EPOCH, in the layer's tar headers), so its layer is
# new to the registry and sent whole: a push of a layer the registry has
# stops its upload (the registry-repush case times that).
# Its layer's file is then removed from the registry's storage (the API
# only unlinks a blob, and eighteen new layers a run would fill the disk).
registry_job() {
  local epoch=$((1000000000 + $(date +%s%N) / 1000 % 1000000000)) disk digest
  mkdir -p "$OUT/tmp" &&
    SOURCE_DATE_EPOCH=$epoch TMPDIR="$OUT/tmp" "$BIN" push -q --insecure "$ZQCOW" "$REG/bench/disk:1" >/dev/null &&
    disk=$(TMPDIR="$OUT/tmp" "$DIR/ocipull" -insecure -cache "$OUT/cache" "$REG/bench/disk:1") || return
  digest=$(basename "$disk" .image)
  rm -rf "$REGDIR/storage/docker/registry/v2/blobs/sha256/${digest:0:2}/$digest"
}
# registry_repush_job: the same file pushed again with the same timestamp
# (after the warm-up run, or any earlier one, the registry has its layer),
# then pulled: a nightly rebuild of the same bytes.
registry_repush_job() {
  mkdir -p "$OUT/tmp" &&
    SOURCE_DATE_EPOCH=1700000000 TMPDIR="$OUT/tmp" "$BIN" push -q --insecure "$ZQCOW" "$REG/bench/again:1" >/dev/null &&
    TMPDIR="$OUT/tmp" "$DIR/ocipull" -insecure -cache "$OUT/cache" "$REG/bench/again:1" >/dev/null
}
copy_job() { # the same bytes moved once and hashed once
  cp "$ZQCOW" "$OUT/copy.qcow2" && sha256sum "$OUT/copy.qcow2" >/dev/null
}
# registry_floor_job: the least a push and a pull of these bytes can take
# with this registry: curl uploads the file as one blob (its digest known
# beforehand, nothing hashed, no tar) and downloads it to a file. The
# registry hashes and stores what it receives whoever sends it.
registry_floor_job() {
  local loc sep
  loc=$(curl -fsS -o /dev/null -D - -X POST "http://$REG/v2/bench/floor/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
  case $loc in /*) loc="http://$REG$loc" ;; esac
  case $loc in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' -T "$ZQCOW" "$loc${sep}digest=sha256:$ZSUM" &&
    curl -fsS -o "$OUT/floor.qcow2" "http://$REG/v2/bench/floor/blobs/sha256:$ZSUM"
}
export -f qemu_job qemu_download_job durable registry_job registry_repush_job copy_job registry_floor_job; export OUT BIN DIR ZQCOW ZSUM REG REGDIR

selected() { [ "$ONLY" = "  " ] || [[ $ONLY == *" $1 "* ]]; }
# name|our command|qemu-img's|the file qemu-img's writes
CASES=(
  "zqcow2-to-qcow2|$BIN convert -O qcow2 $ZQCOW $OUT/o.qcow2|qemu-img convert -O qcow2 $ZQCOW $OUT/o.qcow2|$OUT/o.qcow2"
  "zqcow2-to-raw|$BIN convert -O raw $ZQCOW $OUT/o.raw|qemu-img convert -O raw $ZQCOW $OUT/o.raw|$OUT/o.raw"
  "raw-to-qcow2|$BIN convert -O qcow2 $RAW $OUT/o.qcow2|qemu-img convert -O qcow2 $RAW $OUT/o.qcow2|$OUT/o.qcow2"
  # The same work as qemu-img's: no sync on our side either.
  "zqcow2-to-raw-nosync|$BIN convert --no-sync -O raw $ZQCOW $OUT/o.raw|qemu-img convert -O raw $ZQCOW $OUT/o.raw|$OUT/o.raw"
  "raw-to-qcow2-nosync|$BIN convert --no-sync -O qcow2 $RAW $OUT/o.qcow2|qemu-img convert -O qcow2 $RAW $OUT/o.qcow2|$OUT/o.qcow2"
  "single-job|$BIN single job 10G -i $ZQCOW -od $OUT|env IN=$ZQCOW bash -c qemu_job|$OUT/job.qcow2"
  # The cache is in $OUT, which every run starts without: always a download.
  "download-job|$BIN single job 10G -i $URL -ict sha256 -ic $ZSUM -od $OUT --cache-dir $OUT/cache|env URL_IN=$URL SUM_IN=$ZSUM bash -c qemu_download_job|$OUT/job.qcow2"
)
# Each file in bench/cases.d appends its cases to CASES (and exports the
# shell functions they call): one file per format or feature, so that adding
# a case touches no other.
for f in "$ROOT"/bench/cases.d/*.sh; do
  [ -e "$f" ] || continue
  # shellcheck disable=SC1090
  . "$f"
done
if [ -n "$REG" ]; then
  CASES+=("registry|bash -c registry_job|bash -c copy_job|$OUT/copy.qcow2")
  CASES+=("registry-floor|bash -c registry_floor_job|bash -c copy_job|$OUT/copy.qcow2")
  CASES+=("registry-repush|bash -c registry_repush_job|bash -c copy_job|$OUT/copy.qcow2")
elif selected registry || selected registry-floor || selected registry-repush; then
  echo "registry case skipped: docker-registry is not installed (apt-get install docker-registry)" >&2
fi
rm -f "$DIR"/*.times
for ((i = 1; i <= RUNS; i++)); do
  for c in "${CASES[@]}"; do
    IFS='|' read -r name ours theirs theirfile <<<"$c"
    selected "$name" || continue
    # The order changes from run to run, through all six: a run right after
    # another big one can be slower here (the VM hands out memory just
    # freed), so no side should always come first, nor always after the
    # same other one.
    orders=(012 120 201 021 210 102)
    order=${orders[$(((i - 1) % 6))]}
    for k in 0 1 2; do
      case ${order:$k:1} in
        # shellcheck disable=SC2086
        0) measure "$name.ours" $ours ;;
        # shellcheck disable=SC2086
        1) measure "$name.qemu" $theirs ;;
        # shellcheck disable=SC2086
        2) measure "$name.qsync" bash -c 'durable "$@"' durable "$theirfile" $theirs ;;
      esac
    done
  done
done

printf "%-16s %8s %8s %7s %11s %7s %10s %10s\n" case ours_s qemu_s ratio qemu+sync_s ratio ours_rss qemu_rss
for c in "${CASES[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  selected "$name" || continue
  o=$(cut -d' ' -f1 "$DIR/$name.ours.times" | median)
  q=$(cut -d' ' -f1 "$DIR/$name.qemu.times" | median)
  qs=$(cut -d' ' -f1 "$DIR/$name.qsync.times" | median)
  orss=$(cut -d' ' -f2 "$DIR/$name.ours.times" | sort -n | tail -1)
  qrss=$(cut -d' ' -f2 "$DIR/$name.qemu.times" | sort -n | tail -1)
  printf "%-16s %8s %8s %7.2f %11s %7.2f %6d MiB %6d MiB\n" "$name" "$o" "$q" "$(ratio "$o" "$q")" "$qs" "$(ratio "$o" "$qs")" $((orss / 1024)) $((qrss / 1024))
done
echo "(median wall seconds of $RUNS runs; ratio = ours/qemu-img's; qemu+sync = qemu-img's flow then sync of its output; RSS = the largest peak seen)"
if [ -n "$REG" ] && selected registry-floor; then
  echo "(registry-floor: in the ours column, curl's upload and download of the same file as one blob, nothing hashed on the client: what the registry itself takes)"
fi
if [ -n "$REG" ] && selected registry-repush; then
  echo "(registry-repush: ours = push of a layer the registry has, then pull)"
fi
# The zstd floor: libzstd (the library qemu-img uses, at the level it
# uses, 3) compressing the image's data clusters as 64 KiB blocks on one
# core, and that speed spread over every core with nothing else to do.
if selected raw-to-qcow2-zstd && command -v zstd >/dev/null; then
  (cd "$ROOT" && go build -o "$DIR/dataclusters" ./bench/dataclusters)
  if [ ! -f "$DIR/clusters.bin" ] || [ "$DIR/clusters.bin" -ot "$RAW" ]; then
    "$DIR/dataclusters" "$RAW" >"$DIR/clusters.bin.tmp" && mv "$DIR/clusters.bin.tmp" "$DIR/clusters.bin"
  fi
  bytes=$(stat -c %s "$DIR/clusters.bin")
  speed=$(zstd -b3 -B65536 -T1 "$DIR/clusters.bin" 2>&1 | tr '\r' '\n' | grep 'MB/s.*MB/s' | tail -1 | grep -o '[0-9.]* MB/s' | head -1 | cut -d' ' -f1)
  q=$(cut -d' ' -f1 "$DIR/raw-to-qcow2-zstd.qemu.times" | median)
  echo "$bytes $speed $(nproc) $q" | awk '{s = $1 / ($2 * 1e6); printf "(zstd floor: libzstd level 3 compresses the %.0f MiB of data clusters in 64 KiB blocks at %s MB/s on one core: %.2f s on %d cores, %.2f of qemu-img'"'"'s %s s; a ratio of 0.25 needs %d cores at that speed)\n", $1 / 1048576, $2, s / $3, $3, s / $3 / $4, $4, int(s / (0.25 * $4)) + 1}'
fi
if [ -n "$REG" ] && selected registry; then
  echo "(registry: ours = push + pull, qemu = cp + sha256sum of the copy)"
  rm -rf "$OUT"
  mkdir -p "$OUT"
  bash -c registry_job
  echo "registry: the files a push and a pull left in $OUT, their temporary directory included:"
  (cd "$OUT" && find . -type f -printf '  %p %s bytes\n' | sort)
fi
