package media

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"net/http"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// limits bound what the pipeline accepts and produces.
type limits struct {
	maxPixels int
	maxSide   int
	widths    []int // ascending, unique
	quality   int
}

// encoded is one variant before it is written.
type encoded struct {
	width, height int
	hash          string // hex sha256 of data, truncated to 32 characters
	data          []byte
}

// processed is the outcome of the decode→resize→encode pipeline.
type processed struct {
	width, height int
	color         string
	variants      []encoded // smallest first
	// largest is the pixels the largest variant was encoded from, which
	// the background encoder prefers to decoding that JPEG.
	largest *image.RGBA
}

type format struct {
	decodeConfig func(io.Reader) (image.Config, error)
	decode       func(io.Reader) (image.Image, error)
}

// formats are the accepted content types, sniffed from the bytes (never
// trusted from the Content-Type header). gif.Decode returns the first frame.
var formats = map[string]format{
	"image/jpeg": {jpeg.DecodeConfig, jpeg.Decode},
	"image/png":  {png.DecodeConfig, png.Decode},
	"image/gif":  {gif.DecodeConfig, gif.Decode},
	"image/webp": {webp.DecodeConfig, webp.Decode},
}

// process decodes data, checks its dimensions before allocating pixels,
// and encodes one JPEG per width.
func process(data []byte, l limits) (processed, error) {
	ct := http.DetectContentType(data)
	f, ok := formats[ct]
	if !ok {
		return processed{}, fmt.Errorf("%w: unsupported type %s", ErrBadImage, ct)
	}
	cfg, err := f.decodeConfig(bytes.NewReader(data))
	if err != nil {
		return processed{}, fmt.Errorf("%w: %s header: %v", ErrBadImage, ct, err)
	}
	// The header is checked before decoding: a few hundred bytes can
	// declare a 50000×50000 image that would need gigabytes.
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return processed{}, fmt.Errorf("%w: empty %dx%d image", ErrBadImage, cfg.Width, cfg.Height)
	}
	if cfg.Width > l.maxSide || cfg.Height > l.maxSide || cfg.Width*cfg.Height > l.maxPixels {
		return processed{}, fmt.Errorf("%w: %dx%d exceeds the pixel limit", ErrBadImage, cfg.Width, cfg.Height)
	}
	src, err := f.decode(bytes.NewReader(data))
	if err != nil {
		return processed{}, fmt.Errorf("%w: decode %s: %v", ErrBadImage, ct, err)
	}
	b := src.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 || w > l.maxSide || h > l.maxSide || w*h > l.maxPixels {
		return processed{}, fmt.Errorf("%w: decoded %dx%d outside limits", ErrBadImage, w, h)
	}

	out := processed{width: w, height: h}
	// One conversion to RGBA (JPEG has no alpha: transparent areas are
	// flattened onto white, as a page would show them), then a cascade from
	// the largest width down, each step scaling the previous result: every
	// step stays within a ~2× reduction where CatmullRom is sharp, and no
	// step reads the full-size image through the slow YCbCr path again.
	base := image.NewRGBA(image.Rect(0, 0, w, h))
	if isOpaque(src) {
		draw.Draw(base, base.Bounds(), src, b.Min, draw.Src)
	} else {
		draw.Draw(base, base.Bounds(), image.White, image.Point{}, draw.Src)
		draw.Draw(base, base.Bounds(), src, b.Min, draw.Over)
	}
	targets := targetWidths(w, l.widths)
	sizes := make([]image.Point, len(targets))
	for i, tw := range targets {
		sizes[i] = image.Pt(tw, max(1, (h*tw+w/2)/w))
	}
	scaled := cascade(base, sizes)
	var buf bytes.Buffer
	for _, img := range scaled {
		buf.Reset()
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: l.quality}); err != nil {
			return processed{}, fmt.Errorf("media: encode jpeg: %w", err)
		}
		data := bytes.Clone(buf.Bytes())
		sum := sha256.Sum256(data)
		out.variants = append(out.variants, encoded{
			width: img.Rect.Dx(), height: img.Rect.Dy(), data: data,
			hash: hex.EncodeToString(sum[:16]),
		})
	}
	out.largest = scaled[len(scaled)-1]
	smallest := scaled[0]
	out.color = dominantColor(smallest)
	return out, nil
}

// cascade scales base to each of sizes (ascending, none larger than base),
// from the largest down, each step scaling the previous result, and returns
// the images in the order of sizes.
func cascade(base *image.RGBA, sizes []image.Point) []*image.RGBA {
	scaled := make([]*image.RGBA, len(sizes))
	prev := base
	for i := len(sizes) - 1; i >= 0; i-- {
		tw, th := sizes[i].X, sizes[i].Y
		if tw == prev.Rect.Dx() && th == prev.Rect.Dy() {
			scaled[i] = prev
			continue
		}
		dst := image.NewRGBA(image.Rect(0, 0, tw, th))
		draw.CatmullRom.Scale(dst, dst.Bounds(), prev, prev.Rect, draw.Src, nil)
		scaled[i], prev = dst, dst
	}
	return scaled
}

// targetWidths lists the output widths for an image w pixels wide: every
// configured width below w, plus w itself when it is not wider than the
// largest configured width. Nothing is ever upscaled, and an image narrower
// than the smallest width is kept at its own size as the only variant.
func targetWidths(w int, widths []int) []int {
	var out []int
	for _, tw := range widths {
		if tw < w {
			out = append(out, tw)
		}
	}
	if len(widths) == 0 || w <= widths[len(widths)-1] {
		out = append(out, w)
	}
	return out
}

func isOpaque(img image.Image) bool {
	if o, ok := img.(interface{ Opaque() bool }); ok {
		return o.Opaque()
	}
	return false
}

// dominantColor returns the most frequent colour of a thumbnail, quantised
// to 4 bits per channel and reported as the mean of that bucket, as
// "#rrggbb". The most frequent bucket, unlike a plain mean, is a colour that
// is actually in the picture.
func dominantColor(img *image.RGBA) string {
	const side = 24
	small := img
	if b := img.Bounds(); b.Dx() > side || b.Dy() > side {
		sw, sh := min(side, b.Dx()), min(side, b.Dy())
		small = image.NewRGBA(image.Rect(0, 0, sw, sh))
		draw.ApproxBiLinear.Scale(small, small.Bounds(), img, b, draw.Src, nil)
	}
	type acc struct{ n, r, g, b int }
	var buckets [4096]acc
	best := 0
	p := small.Pix
	for i := 0; i+3 < len(p); i += 4 {
		r, g, b := int(p[i]), int(p[i+1]), int(p[i+2])
		k := r>>4<<8 | g>>4<<4 | b>>4
		a := &buckets[k]
		a.n++
		a.r += r
		a.g += g
		a.b += b
		if a.n > buckets[best].n {
			best = k
		}
	}
	a := buckets[best]
	if a.n == 0 {
		return "#000000"
	}
	c := color.RGBA{uint8(a.r / a.n), uint8(a.g / a.n), uint8(a.b / a.n), 0xff}
	return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B)
}
