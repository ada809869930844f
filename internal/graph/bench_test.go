package graph

import (
	"bytes"
	"testing"
)

// BenchmarkDecodeMediaPage decodes a 25-item page of carousels with two
// children each, the shape one poll reads.
func BenchmarkDecodeMediaPage(b *testing.B) {
	page := mediaPageJSON(25)
	b.SetBytes(int64(len(page)))
	b.ReportAllocs()
	for b.Loop() {
		p, err := decodeMediaPage(bytes.NewReader(page))
		if err != nil || len(p.Items) != 25 {
			b.Fatal(err)
		}
	}
}

func TestMediaPageJSONDecodes(t *testing.T) {
	p, err := decodeMediaPage(bytes.NewReader(mediaPageJSON(25)))
	if err != nil || len(p.Items) != 25 || len(p.Items[24].Children) != 2 || p.Next == "" {
		t.Fatalf("items=%d err=%v", len(p.Items), err)
	}
}
