// Package secret encrypts small secrets (access tokens) at rest with
// AES-256-GCM. A sealed value is
//
//	version (1 byte) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// where version is the first byte of SHA-256(key), so a value names the key
// it was sealed with and keys can be rotated. The caller passes additional
// data that binds the value to its place (e.g. the row id), so a value
// copied to another row does not open.
package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// KeySize is the key length in bytes (AES-256).
const KeySize = 32

const (
	nonceSize = 12
	overhead  = 1 + nonceSize + 16
)

// Errors.
var (
	// ErrDecrypt is returned when no key opens a sealed value: the key is
	// wrong, the data was altered, or it belongs to another row.
	ErrDecrypt = errors.New("secret: cannot decrypt (wrong key or tampered data)")
	// ErrKeySize is returned for a key that is not KeySize bytes.
	ErrKeySize = errors.New("secret: key must be 32 bytes")
)

type key struct {
	version byte
	aead    cipher.AEAD
}

// Box seals and opens values. It is safe for concurrent use.
type Box struct {
	current key
	all     []key // current first, then previous keys
}

// New returns a Box that seals with current and opens values sealed with
// current or any of previous.
func New(current []byte, previous ...[]byte) (*Box, error) {
	b := &Box{}
	for i, raw := range append([][]byte{current}, previous...) {
		k, err := newKey(raw)
		if err != nil {
			if i == 0 {
				return nil, err
			}
			return nil, fmt.Errorf("previous key %d: %w", i, err)
		}
		b.all = append(b.all, k)
	}
	b.current = b.all[0]
	return b, nil
}

func newKey(raw []byte) (key, error) {
	if len(raw) != KeySize {
		return key{}, ErrKeySize
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, fmt.Errorf("secret: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, fmt.Errorf("secret: %w", err)
	}
	return key{version: Version(raw), aead: aead}, nil
}

// Version is the key-version byte that values sealed with k start with.
func Version(k []byte) byte {
	sum := sha256.Sum256(k)
	return sum[0]
}

// Seal encrypts plaintext bound to aad with the current key and a random nonce.
func (b *Box) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+nonceSize, overhead+len(plaintext))
	out[0] = b.current.version
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("secret: nonce: %w", err)
	}
	return b.current.aead.Seal(out, out[1:1+nonceSize], plaintext, aad), nil
}

// Open decrypts a value made by Seal with the same aad. It tries every key
// whose version matches (versions may collide) and returns ErrDecrypt when
// none opens it.
func (b *Box) Open(sealed, aad []byte) ([]byte, error) {
	if len(sealed) < overhead {
		return nil, ErrDecrypt
	}
	for _, k := range b.all {
		if k.version != sealed[0] {
			continue
		}
		if pt, err := k.aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], aad); err == nil {
			return pt, nil
		}
	}
	return nil, ErrDecrypt
}

// NeedsRotation reports whether sealed was made with a key other than the
// current one and should be sealed again.
func (b *Box) NeedsRotation(sealed []byte) bool {
	return len(sealed) == 0 || sealed[0] != b.current.version
}
