// Command gen writes widget/dist from widget/src (run by `go generate ./widget`).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/feedd/feedd/widget/internal/build"
)

func main() {
	out, err := build.Bundle("src")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for name, b := range map[string][]byte{"widget.js": out.JS, "widget.css": out.CSS} {
		if err := os.WriteFile(filepath.Join("dist", name), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
