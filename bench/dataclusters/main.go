// Command dataclusters writes to standard output the 64 KiB clusters of a
// file that are not all zeros, in order: the bytes qemu-img and we
// compress when converting it with -c. bench.sh times libzstd on them, to
// show the least time any compressor of that level takes on this machine.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log"
	"os"
)

const cluster = 64 << 10

func main() {
	if len(os.Args) != 2 {
		log.Fatal("usage: dataclusters FILE > CLUSTERS")
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	w := bufio.NewWriterSize(os.Stdout, 1<<20)
	buf := make([]byte, cluster)
	zero := make([]byte, cluster)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := w.Write(buf[:n]); err != nil {
				log.Fatal(err)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		log.Fatal(err)
	}
}
