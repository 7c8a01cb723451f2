// Package password hashes and verifies passwords with argon2id and holds
// the password policy. It is a leaf of authz, so that config checks the
// argon2id parameters with the same rule the sign-in service applies.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are the argon2id cost parameters. The zero value is invalid
// (Validate refuses it). Parameters weaker than Default make offline
// guessing of a stolen hash cheaper: use them only in tests.
type Params struct {
	// Memory is the memory cost in KiB; it must be at least 8*Parallelism.
	Memory uint32
	// Iterations is the time cost (passes over memory), at least 1.
	Iterations uint32
	// Parallelism is the number of lanes, at least 1.
	Parallelism uint8
	// SaltLen is the random salt length in bytes, at least 8.
	SaltLen uint32
	// KeyLen is the derived key length in bytes, at least 16.
	KeyLen uint32
}

// Default follows the OWASP Password Storage Cheat Sheet for
// argon2id: 19 MiB of memory, 2 iterations, 1 lane, a 16-byte salt and a
// 32-byte key.
var Default = Params{Memory: 19456, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}

// Bounds accepted when parsing a stored hash. They stop a tampered or
// corrupt hash from making one verification take gigabytes or minutes.
const (
	maxMemoryKiB  = 1 << 21 // 2 GiB
	maxIterations = 100
	maxSaltLen    = 1024
	maxKeyLen     = 1024
)

// MaxBytes is the longest password, in bytes, that Policy.Check accepts
// and a sign-in will verify; it guards against denial of service by huge
// inputs.
const MaxBytes = 1024

// ErrMalformedHash means an encoded password hash could not be parsed or
// has parameters outside the accepted bounds.
var ErrMalformedHash = errors.New("password: malformed hash")

// Validate reports whether p can be used to hash passwords: the bounds
// below, which also stop a tampered stored hash from making one
// verification take gigabytes or minutes. It is the one rule for the
// CRMGATE_PASSWORD_ARGON2_* settings too.
func (p Params) Validate() error {
	switch {
	case p.Parallelism < 1:
		return errors.New("password: params: parallelism must be at least 1")
	case p.Memory < 8*uint32(p.Parallelism) || p.Memory > maxMemoryKiB:
		return fmt.Errorf("password: params: memory must be between %d and %d KiB", 8*uint32(p.Parallelism), maxMemoryKiB)
	case p.Iterations < 1 || p.Iterations > maxIterations:
		return fmt.Errorf("password: params: iterations must be between 1 and %d", maxIterations)
	case p.SaltLen < 8 || p.SaltLen > maxSaltLen:
		return fmt.Errorf("password: params: salt length must be between 8 and %d", maxSaltLen)
	case p.KeyLen < 16 || p.KeyLen > maxKeyLen:
		return fmt.Errorf("password: params: key length must be between 16 and %d", maxKeyLen)
	}
	return nil
}

// Hash hashes pw with argon2id and a fresh random salt and returns
// the PHC string form, for example
// "$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>" (unpadded standard base64).
// It does not apply the password policy; call Policy.Check first.
func Hash(pw string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Iterations, p.Memory, p.Parallelism, p.KeyLen)
	return encodeHash(p, salt, key), nil
}

func encodeHash(p Params, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Iterations, p.Parallelism, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// Verify reports whether pw matches the encoded argon2id hash,
// comparing keys in constant time. needsRehash is true when ok and the hash
// was made with parameters other than Default. A hash that
// cannot be parsed gives ok false and an error wrapping ErrMalformedHash;
// it never panics.
func Verify(encoded, pw string) (ok, needsRehash bool, err error) {
	return Default.Verify(encoded, pw)
}

// Verify is the package function Verify with p as the current parameters: needsRehash is
// true when ok and the hash was made with parameters other than p.
func (p Params) Verify(encoded, pw string) (ok, needsRehash bool, err error) {
	hp, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, false, err
	}
	got := argon2.IDKey([]byte(pw), salt, hp.Iterations, hp.Memory, hp.Parallelism, hp.KeyLen)
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return false, false, nil
	}
	return true, hp != p, nil
}

// ParseHash returns the parameters an encoded hash was made with.
func ParseHash(encoded string) (Params, error) {
	p, _, _, err := decodeHash(encoded)
	return p, err
}

func decodeHash(encoded string) (Params, []byte, []byte, error) {
	var p Params
	fail := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" {
		return fail("expected $argon2id$v=..$m=..,t=..,p=..$salt$hash")
	}
	if parts[1] != "argon2id" {
		return fail("unsupported algorithm")
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return fail("unsupported version")
	}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(parts[3], ",") {
		k, v, found := strings.Cut(kv, "=")
		if !found || seen[k] {
			return fail("bad parameter list")
		}
		seen[k] = true
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return fail("bad parameter " + k)
		}
		switch k {
		case "m":
			p.Memory = uint32(n)
		case "t":
			p.Iterations = uint32(n)
		case "p":
			if n > 255 {
				return fail("parallelism out of range")
			}
			p.Parallelism = uint8(n)
		default:
			return fail("unknown parameter " + k)
		}
	}
	if len(seen) != 3 {
		return fail("missing parameter")
	}
	b64 := base64.RawStdEncoding.Strict()
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return fail("bad salt encoding")
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil {
		return fail("bad hash encoding")
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	if err := p.Validate(); err != nil {
		return fail(strings.TrimPrefix(err.Error(), "password: params: "))
	}
	return p, salt, key, nil
}
