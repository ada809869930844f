package secret

import (
	"bytes"
	"errors"
	"testing"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestRoundTrip(t *testing.T) {
	box, err := New(testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("IGAAtokenvalue")
	aad := []byte("feedd/token/abc")
	s1, err := box.Seal(pt, aad)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := box.Seal(pt, aad)
	if bytes.Equal(s1, s2) {
		t.Error("two seals of the same value are equal: nonce not random")
	}
	if bytes.Contains(s1, pt) {
		t.Error("sealed value contains the plaintext")
	}
	if s1[0] != Version(testKey(1)) || len(s1) != len(pt)+overhead {
		t.Errorf("layout: version %x, len %d", s1[0], len(s1))
	}
	got, err := box.Open(s1, aad)
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if box.NeedsRotation(s1) {
		t.Error("fresh value needs rotation")
	}
}

func TestOpenRefuses(t *testing.T) {
	box, _ := New(testKey(1))
	aad := []byte("feedd/token/abc")
	sealed, _ := box.Seal([]byte("token"), aad)
	other, _ := New(testKey(2))

	flip := func(i int) []byte {
		c := bytes.Clone(sealed)
		c[i] ^= 0x01
		return c
	}
	tests := []struct {
		name   string
		box    *Box
		sealed []byte
		aad    []byte
	}{
		{"flipped ciphertext byte", box, flip(len(sealed) - 20), aad},
		{"flipped tag byte", box, flip(len(sealed) - 1), aad},
		{"flipped nonce byte", box, flip(3), aad},
		{"flipped version byte", box, flip(0), aad},
		{"moved to another row", box, sealed, []byte("feedd/token/xyz")},
		{"wrong key", other, sealed, aad},
		{"truncated", box, sealed[:10], aad},
		{"empty", box, nil, aad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pt, err := tt.box.Open(tt.sealed, tt.aad)
			if !errors.Is(err, ErrDecrypt) || pt != nil {
				t.Errorf("Open = %q, %v; want ErrDecrypt", pt, err)
			}
		})
	}
	if ErrDecrypt.Error() != "secret: cannot decrypt (wrong key or tampered data)" {
		t.Errorf("message %q", ErrDecrypt)
	}
}

func TestRotation(t *testing.T) {
	oldBox, _ := New(testKey(1))
	aad := []byte("feedd/token/abc")
	sealed, _ := oldBox.Seal([]byte("token"), aad)

	rotated, err := New(testKey(2), testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	if !rotated.NeedsRotation(sealed) {
		t.Error("value sealed with the previous key does not need rotation")
	}
	pt, err := rotated.Open(sealed, aad)
	if err != nil || string(pt) != "token" {
		t.Fatalf("previous key: Open = %q, %v", pt, err)
	}
	resealed, _ := rotated.Seal(pt, aad)
	if rotated.NeedsRotation(resealed) || resealed[0] != Version(testKey(2)) {
		t.Error("new seal not under the current key")
	}
	if _, err := oldBox.Open(resealed, aad); !errors.Is(err, ErrDecrypt) {
		t.Error("the old key alone opens a value sealed with the new one")
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	if _, err := New(make([]byte, 16)); !errors.Is(err, ErrKeySize) {
		t.Errorf("16-byte key: %v", err)
	}
	if _, err := New(testKey(1), make([]byte, 31)); !errors.Is(err, ErrKeySize) {
		t.Errorf("bad previous key: %v", err)
	}
}

func BenchmarkOpen(b *testing.B) {
	box, _ := New(testKey(1))
	aad := []byte("feedd/token/abcdefghij")
	sealed, _ := box.Seal(bytes.Repeat([]byte("t"), 200), aad)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := box.Open(sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}
