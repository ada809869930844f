package web

import "testing"

func TestAllowOrigin(t *testing.T) {
	if v, ok := AllowOrigin(nil, ""); !ok || v != "*" {
		t.Error("no list must allow all")
	}
	if v, ok := AllowOrigin([]string{"https://a.example", "*"}, "https://b.example"); !ok || v != "*" {
		t.Error(`"*" in the list must allow all`)
	}
	if _, ok := AllowOrigin([]string{"https://a.example"}, "null"); ok {
		t.Error(`"null" origin allowed`)
	}
	if _, ok := AllowOrigin([]string{"https://a.example"}, "http://a.example"); ok {
		t.Error("scheme ignored")
	}
	if v, ok := AllowOrigin([]string{"https://A.example/"}, "https://a.example"); !ok || v != "https://a.example" {
		t.Errorf("case or trailing slash not ignored: %q %v", v, ok)
	}
}

func TestAcceptsGzip(t *testing.T) {
	tests := map[string]bool{
		"gzip": true, "GZIP": true, "br, gzip": true, "gzip;q=0.5": true, "x-gzip": true, "*": true,
		"gzip;q=0": false, "gzip; q=0.000": false, "*;q=0": false, "br": false, "identity": false, "": false,
		"gzipper": false, "*, gzip;q=0": false,
	}
	for in, want := range tests {
		if got := AcceptsGzip([]string{in}); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
	if !AcceptsGzip([]string{"br", "gzip"}) {
		t.Error("a second Accept-Encoding line ignored")
	}
}

func TestETagMatch(t *testing.T) {
	const etag = `"abc"`
	tests := map[string]bool{
		`"abc"`: true, `W/"abc"`: true, `*`: true, `"x", "abc"`: true, ` ,"x",W/"abc"`: true, `junk, "abc"`: true,
		`"abcd"`: false, `abc`: false, `"x"`: false, ``: false, `"abc`: false,
	}
	for in, want := range tests {
		if got := ETagMatch([]string{in}, etag); got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
	if !ETagMatch([]string{`"x"`, `"abc"`}, etag) {
		t.Error("a second If-None-Match line ignored")
	}
}

func TestStrongETag(t *testing.T) {
	// The value is sent to clients and kept by caches: it must not change.
	if got, want := StrongETag([]byte("hello")), `"LPJNul-wow4m6Dsq"`; got != want {
		t.Errorf("StrongETag = %s, want %s", got, want)
	}
}
