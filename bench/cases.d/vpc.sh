# VHD (vpc): raw -> dynamic and fixed VHD, and a dynamic VHD back to raw,
# against qemu-img doing the same. The dynamic VHD input is made once by
# qemu-img from the benchmark file system.
VHD="$DIR/fs.vhd"
if [ ! -f "$VHD" ]; then
  echo "converting it to a dynamic VHD ..." >&2
  qemu-img convert -O vpc "$RAW" "$VHD.tmp"
  mv "$VHD.tmp" "$VHD"
fi
CASES+=(
  "raw-to-vpc|$BIN convert -O vpc $RAW $OUT/o.vhd|qemu-img convert -O vpc $RAW $OUT/o.vhd|$OUT/o.vhd"
  "raw-to-vpc-fixed|$BIN convert -O vpc -o subformat=fixed $RAW $OUT/o.vhd|qemu-img convert -O vpc -o subformat=fixed $RAW $OUT/o.vhd|$OUT/o.vhd"
  "vpc-to-raw|$BIN convert -O raw $VHD $OUT/o.raw|qemu-img convert -f vpc -O raw $VHD $OUT/o.raw|$OUT/o.raw"
  "raw-to-vpc-nosync|$BIN convert --no-sync -O vpc $RAW $OUT/o.vhd|qemu-img convert -O vpc $RAW $OUT/o.vhd|$OUT/o.vhd"
  "raw-to-vpc-fixed-nosync|$BIN convert --no-sync -O vpc -o subformat=fixed $RAW $OUT/o.vhd|qemu-img convert -O vpc -o subformat=fixed $RAW $OUT/o.vhd|$OUT/o.vhd"
  "vpc-to-raw-nosync|$BIN convert --no-sync -O raw $VHD $OUT/o.raw|qemu-img convert -f vpc -O raw $VHD $OUT/o.raw|$OUT/o.raw"
)
