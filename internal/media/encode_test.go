package media

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/draw"
	"image/jpeg"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/gen2brain/avif"
	"golang.org/x/image/webp"

	"github.com/feedd/feedd/internal/model"
)

// testPhoto is a real photograph (testdata/README.md), 1080×1080 as
// Instagram serves it: flat synthetic pictures flatter every codec.
func testPhoto(t testing.TB) *image.RGBA {
	t.Helper()
	f, err := os.Open("testdata/photo-1080.jpg")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	src, err := jpeg.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	out := image.NewRGBA(src.Bounds())
	draw.Draw(out, out.Bounds(), src, image.Point{}, draw.Src)
	return out
}

func decodeFormat(t testing.TB, format string, data []byte) image.Image {
	t.Helper()
	var img image.Image
	var err error
	switch format {
	case model.FormatAVIF:
		img, err = avif.Decode(bytes.NewReader(data))
	case model.FormatWebP:
		img, err = webp.Decode(bytes.NewReader(data))
		if y, ok := img.(*image.YCbCr); ok {
			img = webpLuma(y)
		}
	default:
		img, err = jpeg.Decode(bytes.NewReader(data))
	}
	if err != nil {
		t.Fatalf("decode %s: %v", format, err)
	}
	return img
}

// webpLuma is the luma of a decoded WebP. WebP's YCbCr is BT.601 with
// luma in 16-235, where Go's image.YCbCr assumes JPEG's full range: read
// as it is, every WebP would look washed out to the similarity measure.
func webpLuma(y *image.YCbCr) *image.Gray {
	b := y.Bounds()
	out := image.NewGray(b)
	for yy := b.Min.Y; yy < b.Max.Y; yy++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			v := (float64(y.Y[y.YOffset(x, yy)]) - 16) * 255 / 219
			out.Pix[out.PixOffset(x, yy)] = uint8(max(0, min(255, v+0.5)))
		}
	}
	return out
}

// pipeline is what a visitor gets at each width: the JPEG that process
// stores, and the AVIF or WebP the worker makes from the largest JPEG.
type pipelineSize struct {
	source, jpeg *image.RGBA
	jpegBytes    int
}

func runPipeline(t testing.TB, photo *image.RGBA) (sizes []image.Point, out []pipelineSize, fromJPEG []*image.RGBA) {
	t.Helper()
	w, h := photo.Rect.Dx(), photo.Rect.Dy()
	for _, tw := range targetWidths(w, DefaultWidths) {
		sizes = append(sizes, image.Pt(tw, max(1, (h*tw+w/2)/w)))
	}
	sources := cascade(photo, sizes)
	for _, src := range sources {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, src, &jpeg.Options{Quality: DefaultQuality}); err != nil {
			t.Fatal(err)
		}
		dec := decodeFormat(t, "", buf.Bytes())
		rgba := image.NewRGBA(dec.Bounds())
		draw.Draw(rgba, rgba.Bounds(), dec, image.Point{}, draw.Src)
		out = append(out, pipelineSize{source: src, jpeg: rgba, jpegBytes: buf.Len()})
	}
	return sizes, out, cascade(out[len(out)-1].jpeg, sizes)
}

// TestModernFormatsMatchJPEGSimilarity checks the default qualities: at
// every stored width, the AVIF and the WebP the worker makes from a fresh
// download's pixels are at least as similar to the source (SSIM on luma)
// as the JPEG is, within 0.005, and smaller than it.
func TestModernFormatsMatchJPEGSimilarity(t *testing.T) {
	if testing.Short() {
		t.Skip("encodes a photo in three formats")
	}
	sizes, jpegs, _ := runPipeline(t, testPhoto(t))
	for _, f := range []struct {
		format  string
		quality int
	}{{model.FormatAVIF, DefaultAVIFQuality}, {model.FormatWebP, DefaultWebPQuality}} {
		total, totalJPEG := 0, 0
		for i, size := range sizes {
			data, err := encodeImage(context.Background(), f.format, jpegs[i].source, f.quality)
			if err != nil {
				t.Fatal(err)
			}
			js := ssim(jpegs[i].source, jpegs[i].jpeg)
			fs := ssim(jpegs[i].source, decodeFormat(t, f.format, data))
			t.Logf("%d px: jpeg q%d %d B ssim %.4f; %s q%d %d B ssim %.4f", size.X, DefaultQuality, jpegs[i].jpegBytes, js,
				f.format, f.quality, len(data), fs)
			if fs < js-0.005 {
				t.Errorf("%d px %s: SSIM %.4f, JPEG's %.4f", size.X, f.format, fs, js)
			}
			total += len(data)
			totalJPEG += jpegs[i].jpegBytes
		}
		if total >= totalJPEG {
			t.Errorf("%s: %d bytes for the sizes, JPEG %d", f.format, total, totalJPEG)
		}
	}
}

// TestCalibrateQualities prints, for a range of qualities, each format's
// size and SSIM against the source beside the JPEG's, made from the
// source's pixels (a fresh download) and from the stored JPEG (after a
// restart): the table the default qualities were chosen from.
// FEEDD_CALIBRATE=1 runs it (with -v: it prints).
func TestCalibrateQualities(t *testing.T) {
	if os.Getenv("FEEDD_CALIBRATE") == "" {
		t.Skip("FEEDD_CALIBRATE=1 prints the quality table")
	}
	sizes, jpegs, fromJPEG := runPipeline(t, testPhoto(t))
	for i, size := range sizes {
		fmt.Printf("%d px: jpeg q%d %d B ssim %.4f\n", size.X, DefaultQuality, jpegs[i].jpegBytes, ssim(jpegs[i].source, jpegs[i].jpeg))
		for _, from := range []struct {
			name string
			img  *image.RGBA
		}{{"source", jpegs[i].source}, {"jpeg", fromJPEG[i]}} {
			for _, format := range []string{model.FormatAVIF, model.FormatWebP} {
				for q := 50; q <= 90; q += 5 {
					data, err := encodeImage(context.Background(), format, from.img, q)
					if err != nil {
						t.Fatal(err)
					}
					fmt.Printf("  from %s: %s q%d %d B (%.0f%%) ssim %.4f\n", from.name, format, q, len(data),
						100*float64(len(data))/float64(jpegs[i].jpegBytes), ssim(jpegs[i].source, decodeFormat(t, format, data)))
				}
			}
		}
	}
}

// BenchmarkEncode measures one 1080×1080 photo per format at the default
// quality (the first iteration compiles the encoder: run with -benchtime
// of a few iterations). peak-RSS-MB is the process's high-water mark.
func BenchmarkEncode(b *testing.B) {
	photo := testPhoto(b)
	for _, f := range []struct {
		format  string
		quality int
	}{{model.FormatAVIF, DefaultAVIFQuality}, {model.FormatWebP, DefaultWebPQuality}} {
		b.Run(f.format, func(b *testing.B) {
			// The first use compiles the encoder: once per process.
			codec := map[string]*wasmCodec{model.FormatAVIF: &encoders.avif, model.FormatWebP: &encoders.webp}[f.format]
			cpu0, rss0, start := cpuTime(), peakRSS(), time.Now()
			codec.release()
			if _, _, err := codec.get(); err != nil {
				b.Fatal(err)
			}
			codec.put()
			b.Logf("%s: compiled in %s (%s CPU), peak RSS %d → %d MiB", f.format, time.Since(start).Round(time.Millisecond),
				(cpuTime() - cpu0).Round(time.Millisecond), rss0>>20, peakRSS()>>20)
			if _, err := encodeImage(context.Background(), f.format, photo, f.quality); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var n int
			cpu0 = cpuTime()
			for b.Loop() {
				data, err := encodeImage(context.Background(), f.format, photo, f.quality)
				if err != nil {
					b.Fatal(err)
				}
				n = len(data)
			}
			// CPU time as well as wall time: on a shared machine the wall
			// time says more about the neighbours than about the encoder.
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(n), "bytes")
			b.ReportMetric(float64(peakRSS())/(1<<20), "peak-RSS-MB")
		})
	}
}

// peakRSS is the process's resident high-water mark in bytes (VmHWM), 0
// where /proc is missing.
func peakRSS() int64 {
	if runtime.GOOS != "linux" {
		return 0
	}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	var kb int64
	for _, line := range bytes.Split(data, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("VmHWM:")) {
			fmt.Sscanf(string(bytes.TrimPrefix(line, []byte("VmHWM:"))), "%d", &kb)
		}
	}
	return kb << 10
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
