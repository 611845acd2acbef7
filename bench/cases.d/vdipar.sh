# VirtualBox VDI and Parallels (issue 13): the benchmark disk converted to
# each format and back, against qemu-img doing the same. The inputs of the
# *-to-raw cases are made once by qemu-img from $RAW (neither side's own
# output is timed as an input).
VDI_IN="$DIR/fs.vdi"
HDD_IN="$DIR/fs.hdd"
if selected vdi-to-raw && [ ! -f "$VDI_IN" ]; then
  echo "converting the disk to vdi with qemu-img ..." >&2
  qemu-img convert -O vdi "$RAW" "$VDI_IN.tmp" && mv "$VDI_IN.tmp" "$VDI_IN"
fi
if { selected parallels-to-raw || selected parallels-to-raw-nosync; } && [ ! -f "$HDD_IN" ]; then
  echo "converting the disk to parallels with qemu-img ..." >&2
  qemu-img convert -O parallels "$RAW" "$HDD_IN.tmp" && mv "$HDD_IN.tmp" "$HDD_IN"
fi
CASES+=(
  "raw-to-vdi|$BIN convert -O vdi $RAW $OUT/o.vdi|qemu-img convert -O vdi $RAW $OUT/o.vdi|$OUT/o.vdi"
  "vdi-to-raw|$BIN convert -O raw $VDI_IN $OUT/o.raw|qemu-img convert -O raw $VDI_IN $OUT/o.raw|$OUT/o.raw"
  "raw-to-parallels|$BIN convert -O parallels $RAW $OUT/o.hdd|qemu-img convert -O parallels $RAW $OUT/o.hdd|$OUT/o.hdd"
  "parallels-to-raw|$BIN convert -O raw $HDD_IN $OUT/o.raw|qemu-img convert -O raw $HDD_IN $OUT/o.raw|$OUT/o.raw"
  # The same work as qemu-img's: no sync on our side either.
  "raw-to-vdi-nosync|$BIN convert --no-sync -O vdi $RAW $OUT/o.vdi|qemu-img convert -O vdi $RAW $OUT/o.vdi|$OUT/o.vdi"
  "vdi-to-raw-nosync|$BIN convert --no-sync -O raw $VDI_IN $OUT/o.raw|qemu-img convert -O raw $VDI_IN $OUT/o.raw|$OUT/o.raw"
  "raw-to-parallels-nosync|$BIN convert --no-sync -O parallels $RAW $OUT/o.hdd|qemu-img convert -O parallels $RAW $OUT/o.hdd|$OUT/o.hdd"
  "parallels-to-raw-nosync|$BIN convert --no-sync -O raw $HDD_IN $OUT/o.raw|qemu-img convert -O raw $HDD_IN $OUT/o.raw|$OUT/o.raw"
)
