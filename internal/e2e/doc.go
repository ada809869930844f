// Package e2e holds end-to-end tests of feedd's failure paths: the real
// program (internal/app) on a loopback port, the sandbox as Instagram and a
// webhook receiver, driven only through their HTTP surfaces the way an
// owner, a visitor and Meta would.
package e2e
