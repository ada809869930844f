package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/feedd/feedd/internal/config"
	"github.com/feedd/feedd/internal/doctor"
)

// runDoctor checks the configuration like the setup page does, one line
// per check: exit 0 when nothing failed (warnings allowed), 1 otherwise.
// An invalid configuration is itself a failed check, so the operator sees
// it in the same list.
func runDoctor(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 {
		return badUsage(stderr, "doctor takes no arguments; it checks the FEEDD_* variables serve would use")
	}
	cfg, warnings, err := config.Load(env)
	if err != nil {
		printCheck(stdout, doctor.Check{
			ID: "config", Title: "Configuration", Severity: doctor.Fail, Detail: err.Error(),
			Fix: "Correct the variable named above (see docs/configuration.md) and run feedd doctor again.",
		})
		fmt.Fprintln(stdout, "feedd doctor: the configuration does not load; nothing else was checked")
		return exitFailed
	}
	for _, w := range warnings {
		printCheck(stdout, doctor.Check{ID: "config", Title: "Configuration", Severity: doctor.Warn, Detail: w,
			Fix: "Fine for tests; use the default or a longer value in production."})
	}
	checks := doctor.Run(ctx, doctor.Input{Config: cfg})
	for _, c := range checks {
		printCheck(stdout, c)
	}
	fails, warns := 0, len(warnings)
	for _, c := range checks {
		switch c.Status() {
		case "fail":
			fails++
		case "warn":
			warns++
		}
	}
	switch {
	case fails > 0:
		fmt.Fprintf(stdout, "feedd doctor: %s, %s\n", plural(fails, "failure"), plural(warns, "warning"))
		return exitFailed
	case warns > 0:
		fmt.Fprintf(stdout, "feedd doctor: no failures, %s\n", plural(warns, "warning"))
	default:
		fmt.Fprintln(stdout, "feedd doctor: all checks passed")
	}
	return exitOK
}

// printCheck writes "ok|FAIL|warn  title — detail / fix" on one line.
func printCheck(w io.Writer, c doctor.Check) {
	label := c.Status()
	if label == "fail" {
		label = "FAIL"
	}
	line := fmt.Sprintf("%-4s  %s — %s", label, c.Title, c.Detail)
	if c.Fix != "" {
		line += " / " + c.Fix
	}
	fmt.Fprintln(w, strings.ReplaceAll(line, "\n", " "))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
