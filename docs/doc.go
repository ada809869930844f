// Package docs holds feedd's documentation (the Markdown files here). Its
// test keeps the docs in step with the code: every variable, command and
// route they name must exist, and every variable the code reads must be
// documented.
package docs
