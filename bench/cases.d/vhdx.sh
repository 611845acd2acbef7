# vhdx: the benchmark image to and from VHDX (dynamic, qemu-img's default
# block size), against qemu-img convert doing the same. The VHDX input is
# made once by qemu-img, beside the other inputs.
VHDX="$DIR/fs.vhdx"
if [ ! -e "$VHDX" ]; then
  qemu-img convert -O vhdx "$RAW" "$VHDX.tmp" && mv "$VHDX.tmp" "$VHDX"
fi
CASES+=(
  "raw-to-vhdx|$BIN convert -O vhdx $RAW $OUT/o.vhdx|qemu-img convert -O vhdx $RAW $OUT/o.vhdx|$OUT/o.vhdx"
  "vhdx-to-raw|$BIN convert -O raw $VHDX $OUT/o.raw|qemu-img convert -O raw $VHDX $OUT/o.raw|$OUT/o.raw"
  "raw-to-vhdx-nosync|$BIN convert --no-sync -O vhdx $RAW $OUT/o.vhdx|qemu-img convert -O vhdx $RAW $OUT/o.vhdx|$OUT/o.vhdx"
  "vhdx-to-raw-nosync|$BIN convert --no-sync -O raw $VHDX $OUT/o.raw|qemu-img convert -O raw $VHDX $OUT/o.raw|$OUT/o.raw"
)
