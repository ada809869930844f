package media

import (
	"image"
	"math"
)

// ssim is the mean structural similarity of two images of one size, on
// luma (BT.601), over 8×8 windows with a stride of 4 (Wang et al. 2004,
// constants K1 = 0.01, K2 = 0.03, L = 255). 1 is identical.
func ssim(a, b image.Image) float64 {
	la, lb := luma(a), luma(b)
	w, h := a.Bounds().Dx(), a.Bounds().Dy()
	const win, stride = 8, 4
	const c1, c2 = (0.01 * 255) * (0.01 * 255), (0.03 * 255) * (0.03 * 255)
	var sum float64
	n := 0
	for y := 0; y+win <= h; y += stride {
		for x := 0; x+win <= w; x += stride {
			var sa, sb, saa, sbb, sab float64
			for j := range win {
				row := (y+j)*w + x
				for i := range win {
					pa, pb := la[row+i], lb[row+i]
					sa += pa
					sb += pb
					saa += pa * pa
					sbb += pb * pb
					sab += pa * pb
				}
			}
			const k = win * win
			ma, mb := sa/k, sb/k
			va, vb := saa/k-ma*ma, sbb/k-mb*mb
			cov := sab/k - ma*mb
			sum += (2*ma*mb + c1) * (2*cov + c2) / ((ma*ma + mb*mb + c1) * (va + vb + c2))
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

func luma(img image.Image) []float64 {
	b := img.Bounds()
	out := make([]float64, 0, b.Dx()*b.Dy())
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			out = append(out, (0.299*float64(r)+0.587*float64(g)+0.114*float64(bl))/257)
		}
	}
	return out
}
