// Command httpserve serves a directory over HTTP on a loopback address, as
// a static web server would (Range, Last-Modified, sendfile), for the
// download case of bench.sh. It prints the address it listens on.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	dir := flag.String("dir", ".", "the directory to serve")
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	logFile := flag.String("log", "", "append a line per request (method and path) to this file")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ln.Addr())
	handler := http.FileServer(http.Dir(*dir))
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		files := handler
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(f, "%s %s\n", r.Method, r.URL.Path)
			files.ServeHTTP(w, r)
		})
	}
	log.Fatal(http.Serve(ln, handler))
}
