# VMDK: writing both subformats from raw, and reading a streamOptimized
# (compressed) and a monolithicSparse VMDK back to raw, against qemu-img
# doing the same. The VMDK inputs are made once from $RAW by qemu-img.
SVMDK="$DIR/fs-stream.vmdk"
MVMDK="$DIR/fs-sparse.vmdk"
[ -s "$SVMDK" ] || qemu-img convert -O vmdk -o subformat=streamOptimized "$RAW" "$SVMDK"
[ -s "$MVMDK" ] || qemu-img convert -O vmdk "$RAW" "$MVMDK"
CASES+=(
  "raw-to-vmdk-stream|$BIN convert -O vmdk -o subformat=streamOptimized $RAW $OUT/o.vmdk|qemu-img convert -O vmdk -o subformat=streamOptimized $RAW $OUT/o.vmdk|$OUT/o.vmdk"
  "raw-to-vmdk|$BIN convert -O vmdk $RAW $OUT/o.vmdk|qemu-img convert -O vmdk $RAW $OUT/o.vmdk|$OUT/o.vmdk"
  "svmdk-to-raw|$BIN convert -O raw $SVMDK $OUT/o.raw|qemu-img convert -O raw $SVMDK $OUT/o.raw|$OUT/o.raw"
  "vmdk-to-raw|$BIN convert -O raw $MVMDK $OUT/o.raw|qemu-img convert -O raw $MVMDK $OUT/o.raw|$OUT/o.raw"
  # The same work as qemu-img's: no sync on our side either.
  "raw-to-vmdk-nosync|$BIN convert --no-sync -O vmdk $RAW $OUT/o.vmdk|qemu-img convert -O vmdk $RAW $OUT/o.vmdk|$OUT/o.vmdk"
  "vmdk-to-raw-nosync|$BIN convert --no-sync -O raw $MVMDK $OUT/o.raw|qemu-img convert -O raw $MVMDK $OUT/o.raw|$OUT/o.raw"
)
