package media

import (
	"bytes"
	"compress/gzip"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"image"
	"io"
	"runtime/debug"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/feedd/feedd/internal/model"
)

// The encoders are libavif 1.x with aom and libwebp, compiled to
// WebAssembly by github.com/gen2brain/avif v0.4.4 and
// github.com/gen2brain/webp v0.5.5 (sources, build files and licences in
// wasm/). They run in wazero, so a CGO_ENABLED=0 binary stays static: the
// Go packages themselves would load a system libavif through purego, which
// links the binary dynamically against libc.
var (
	//go:embed wasm/avif.wasm.gz
	avifWasm []byte
	//go:embed wasm/webp.wasm.gz
	webpWasm []byte
)

// ErrEncode is returned when an AVIF or WebP encoder fails on an image.
var ErrEncode = errors.New("media: encode failed")

// encodeMemoryPages caps one encoder instance's linear memory (64 KiB
// pages): 4096 pages are 256 MiB, several times what a 1080-px AVIF needs,
// so a runaway encode fails instead of taking the host's memory.
const encodeMemoryPages = 4096

// AVIF and WebP settings. The qualities are the lowest at which the
// encoders' SSIM against the source matches the stored JPEG's at
// DefaultQuality (see docs/benchmarks.md and TestModernFormatsMatchJPEGSimilarity).
const (
	DefaultAVIFQuality = 70
	DefaultWebPQuality = 85
	// avifSpeed trades encode time for size: 0 is slowest, 10 fastest;
	// libavif's default is 6. Encode costs are in docs/benchmarks.md.
	avifSpeed = 8
	// webpMethod trades encode time for size: 0 is fastest, 6 slowest.
	webpMethod = 4
	// avifChroma420 is libavif's AVIF_PIXEL_FORMAT_YUV420, as photos are.
	avifChroma420 = 3
)

// wasmCodec is one WebAssembly encoder. It is compiled on first use, not at
// start-up, and released when the worker has nothing left to do: a process
// that never encodes (feedd version, doctor, a deployment with the formats
// off) pays nothing for it, and an idle one gives the compiled code's
// memory back.
type wasmCodec struct {
	name string
	gz   []byte

	mu       sync.Mutex
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	// users counts the encodes running on rt; a release asked for
	// meanwhile (idle) waits for the last of them.
	users int
	idle  bool
}

// get compiles the encoder unless it is compiled already, and counts one
// user of it until put.
func (c *wasmCodec) get() (wazero.Runtime, wazero.CompiledModule, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rt != nil {
		c.users++
		c.idle = false
		return c.rt, c.compiled, nil
	}
	ctx := context.Background()
	zr, err := gzip.NewReader(bytes.NewReader(c.gz))
	if err != nil {
		return nil, nil, fmt.Errorf("media: %s encoder: %w", c.name, err)
	}
	code, err := io.ReadAll(zr)
	if err != nil {
		return nil, nil, fmt.Errorf("media: %s encoder: %w", c.name, err)
	}
	// CloseOnContextDone lets shutdown interrupt an encode in progress.
	cfg := wazero.NewRuntimeConfig().WithMemoryLimitPages(encodeMemoryPages).WithCloseOnContextDone(true)
	rt := wazero.NewRuntimeWithConfig(ctx, cfg)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("media: %s encoder: %w", c.name, err)
	}
	compiled, err := rt.CompileModule(ctx, code)
	if err != nil {
		rt.Close(ctx)
		return nil, nil, fmt.Errorf("media: %s encoder: %w", c.name, err)
	}
	c.rt, c.compiled = rt, compiled
	c.users, c.idle = 1, false
	return rt, compiled, nil
}

// put ends a use begun by get, and frees the encoder if a release was
// asked for while it ran.
func (c *wasmCodec) put() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.users--
	if c.users == 0 && c.idle {
		c.closeLocked()
	}
}

// release frees the compiled encoder, once no encode runs on it (an
// encode of another worker, in tests of several instances in one process);
// the next use compiles it again.
func (c *wasmCodec) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.users > 0 {
		c.idle = true
		return
	}
	c.closeLocked()
}

func (c *wasmCodec) closeLocked() {
	if c.rt != nil {
		c.rt.Close(context.Background())
		c.rt, c.compiled, c.idle = nil, nil, false
	}
}

// run instantiates a fresh module (so no memory outlives an encode), copies
// the pixels in, calls encode with args built around the input and size
// pointers, and returns a copy of the output.
func (c *wasmCodec) run(ctx context.Context, img *image.RGBA, args func(in, sizePtr uint64) []uint64) ([]byte, error) {
	rt, compiled, err := c.get()
	if err != nil {
		return nil, err
	}
	defer c.put()
	// Anonymous instances: several may exist at once without name clashes.
	mod, err := rt.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: instantiate: %w", ErrEncode, c.name, ctxErr(ctx, err))
	}
	defer mod.Close(context.Background())
	malloc, encode := mod.ExportedFunction("malloc"), mod.ExportedFunction("encode")
	if malloc == nil || encode == nil {
		return nil, fmt.Errorf("%w: %s: missing exports", ErrEncode, c.name)
	}
	pix := tightPix(img)
	in, err := call1(ctx, malloc, uint64(len(pix)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: alloc: %w", ErrEncode, c.name, err)
	}
	mem := mod.Memory()
	if in == 0 || !mem.Write(uint32(in), pix) {
		return nil, fmt.Errorf("%w: %s: out of memory for %d bytes", ErrEncode, c.name, len(pix))
	}
	sizePtr, err := call1(ctx, malloc, 8)
	if err != nil || sizePtr == 0 {
		return nil, fmt.Errorf("%w: %s: alloc: %w", ErrEncode, c.name, errors.Join(err, errors.New("no memory")))
	}
	mem.WriteUint64Le(uint32(sizePtr), 0)
	out, err := call1(ctx, encode, args(in, sizePtr)...)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrEncode, c.name, ctxErr(ctx, err))
	}
	size, ok := mem.ReadUint64Le(uint32(sizePtr))
	if out == 0 || !ok || size == 0 {
		return nil, fmt.Errorf("%w: %s: no output", ErrEncode, c.name)
	}
	data, ok := mem.Read(uint32(out), uint32(size))
	if !ok {
		return nil, fmt.Errorf("%w: %s: output outside memory", ErrEncode, c.name)
	}
	return bytes.Clone(data), nil
}

func call1(ctx context.Context, f api.Function, args ...uint64) (uint64, error) {
	res, err := f.Call(ctx, args...)
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, errors.New("unexpected results")
	}
	return res[0], nil
}

// ctxErr prefers the context's error: wazero reports a closed module.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}

// tightPix returns img's pixels with no padding between rows, as the
// encoders read them.
func tightPix(img *image.RGBA) []byte {
	w, h := img.Rect.Dx(), img.Rect.Dy()
	if img.Stride == 4*w && img.Rect.Min == (image.Point{}) {
		return img.Pix[:4*w*h]
	}
	out := make([]byte, 0, 4*w*h)
	for y := range h {
		i := img.PixOffset(img.Rect.Min.X, img.Rect.Min.Y+y)
		out = append(out, img.Pix[i:i+4*w]...)
	}
	return out
}

// encoders holds the two WebAssembly encoders, shared by every Store of the
// process: compiled code is read-only and costs memory once.
var encoders = struct{ avif, webp wasmCodec }{
	avif: wasmCodec{name: "avif", gz: avifWasm},
	webp: wasmCodec{name: "webp", gz: webpWasm},
}

// releaseEncoders frees both compiled encoders and returns the memory to
// the operating system: the worker calls it when it runs out of work.
func releaseEncoders() {
	encoders.avif.release()
	encoders.webp.release()
	debug.FreeOSMemory()
}

// encodeImage encodes an opaque image in format (model.FormatAVIF or
// model.FormatWebP) at quality 1-100.
func encodeImage(ctx context.Context, format string, img *image.RGBA, quality int) ([]byte, error) {
	w, h := uint64(img.Rect.Dx()), uint64(img.Rect.Dy())
	q := uint64(quality)
	switch format {
	case model.FormatAVIF:
		return encoders.avif.run(ctx, img, func(in, size uint64) []uint64 {
			// encode(rgba, width, height, *size, quality, quality_alpha, speed, chroma)
			return []uint64{in, w, h, size, q, q, avifSpeed, avifChroma420}
		})
	case model.FormatWebP:
		return encoders.webp.run(ctx, img, func(in, size uint64) []uint64 {
			// encode(rgba, width, height, *size, colorspace, quality, method, lossless, exact)
			return []uint64{in, w, h, size, 0, q, webpMethod, 0, 0}
		})
	}
	return nil, fmt.Errorf("%w: unknown format %q", ErrEncode, format)
}
