// Command natsperm generates cosell's least-privilege NATS permission set from contracts/: one NATS user
// per service, allowed exactly the subjects, durable consumers and KV buckets that service uses, plus an
// unrestricted cosell-admin user for provisioning and the CLI. It writes the NATS config fragment
// deploy/nats/cosell-auth.conf and the Helm values deploy/nats/values-auth.yaml that mount it into the
// official NATS chart. `go run ./deploy/natsperm` rewrites both; a test fails when either drifts.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	dir := flag.String("dir", "deploy/nats", "directory to write cosell-auth.conf and values-auth.yaml into")
	flag.Parse()
	for name, body := range Files() {
		path := filepath.Join(*dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "natsperm: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("wrote", path)
	}
}
