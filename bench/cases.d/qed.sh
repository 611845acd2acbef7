# QED (qed): the benchmark image to and from QED, against qemu-img doing
# the same. The QED input is qemu-img's conversion of the raw image, made
# once. Sourced by bench.sh.
QED="$DIR/fs.qed"
if [ ! -f "$QED" ]; then
  echo "converting it to a QED image ..." >&2
  qemu-img convert -O qed "$RAW" "$QED.tmp"
  mv "$QED.tmp" "$QED"
fi
CASES+=(
  "raw-to-qed|$BIN convert -O qed $RAW $OUT/o.qed|qemu-img convert -O qed $RAW $OUT/o.qed|$OUT/o.qed"
  "qed-to-raw|$BIN convert -O raw $QED $OUT/o.raw|qemu-img convert -O raw $QED $OUT/o.raw|$OUT/o.raw"
  "raw-to-qed-nosync|$BIN convert --no-sync -O qed $RAW $OUT/o.qed|qemu-img convert -O qed $RAW $OUT/o.qed|$OUT/o.qed"
  "qed-to-raw-nosync|$BIN convert --no-sync -O raw $QED $OUT/o.raw|qemu-img convert -O raw $QED $OUT/o.raw|$OUT/o.raw"
)
