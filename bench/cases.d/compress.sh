# Compressed outputs (issue 12): raw -> qcow2 -c, zlib and zstd, against
# qemu-img convert -c doing the same (it compresses on one thread). Goal:
# <= 0.25x qemu-img's wall time, peak RSS <= 64 MiB.
CASES+=(
  "raw-to-qcow2-c|$BIN convert -c -O qcow2 $RAW $OUT/o.qcow2|qemu-img convert -c -O qcow2 $RAW $OUT/o.qcow2|$OUT/o.qcow2"
  "raw-to-qcow2-zstd|$BIN convert -c -O qcow2 -o compression_type=zstd $RAW $OUT/o.qcow2|qemu-img convert -c -O qcow2 -o compression_type=zstd $RAW $OUT/o.qcow2|$OUT/o.qcow2"
  "raw-to-qcow2-c-nosync|$BIN convert --no-sync -c -O qcow2 $RAW $OUT/o.qcow2|qemu-img convert -c -O qcow2 $RAW $OUT/o.qcow2|$OUT/o.qcow2"
)
