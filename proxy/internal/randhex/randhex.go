// Package randhex makes the random hexadecimal strings Redis uses as run IDs and EOF marks
// (getRandomHexChars).
package randhex

import (
	"crypto/rand"
	"encoding/hex"
)

// String returns n random hexadecimal characters.
func String(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b) // never fails (crypto/rand panics on the platforms where it could)
	return hex.EncodeToString(b)[:n]
}
