package genvm

// Version is the program's version, printed by gen-vm-image --version.
const Version = "0.1.0"
