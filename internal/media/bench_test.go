package media

import (
	"bytes"
	"image/jpeg"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkProcess measures decode→resize→encode of a typical portrait
// post (1080×1350) into the default widths.
func BenchmarkProcess(b *testing.B) {
	for _, size := range [][2]int{{1080, 1350}, {1440, 1800}} {
		data := jpegBytes(b, size[0], size[1])
		b.Run(sizeName(size), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := process(data, testLimits()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func sizeName(s [2]int) string {
	return strconv.Itoa(s[0]) + "x" + strconv.Itoa(s[1])
}

// FuzzProcess feeds arbitrary bytes to the pipeline: it must never panic,
// never exceed its limits, and produce only decodable JPEGs no wider than
// the source.
func FuzzProcess(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.webp")
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(jpegBytes(f, 40, 30))
	f.Add(pngBytes(f, gradient(33, 17)))
	f.Add(gifBytes(f, 12, 9))
	f.Add(pngBomb(50000, 50000))
	f.Add(jpegBomb(f, 50000, 50000))
	l := limits{maxPixels: 1 << 20, maxSide: 2048, widths: []int{16, 64}, quality: 70}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := process(data, l)
		if err != nil {
			return
		}
		if len(p.variants) == 0 || p.width > l.maxSide || p.height > l.maxSide || p.width*p.height > l.maxPixels {
			t.Fatalf("accepted %dx%d with %d variants", p.width, p.height, len(p.variants))
		}
		prev := 0
		for _, v := range p.variants {
			if v.width > p.width || v.width <= prev || v.height < 1 {
				t.Fatalf("variant %dx%d of %dx%d", v.width, v.height, p.width, p.height)
			}
			prev = v.width
			cfg, err := jpeg.DecodeConfig(bytes.NewReader(v.data))
			if err != nil || cfg.Width != v.width || cfg.Height != v.height {
				t.Fatalf("variant %dx%d encodes as %+v, %v", v.width, v.height, cfg, err)
			}
		}
		if len(p.color) != 7 || p.color[0] != '#' {
			t.Fatalf("color %q", p.color)
		}
	})
}
