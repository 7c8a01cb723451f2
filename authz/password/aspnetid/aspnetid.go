// Package aspnetid hashes and verifies passwords in the ASP.NET Identity
// formats, the ones Power Pages keeps in a contact's
// adx_identity_passwordhash column, so that a site can move between Power
// Pages and crmgate without resetting passwords. It is a leaf of
// authz/password: it knows the formats and nothing of contacts, lockout or
// sessions.
//
// Both formats are the standard base64 (with padding) of a byte string:
//
//	v2 ("IdentityV2"): 0x00 | salt (16 bytes) | subkey (32 bytes)
//	    PBKDF2 with HMAC-SHA1 and 1000 iterations.
//	v3 ("IdentityV3"): 0x01 | PRF | iterations | salt length | salt | subkey
//	    the three header fields are uint32 big-endian; PRF 0 is HMAC-SHA1,
//	    1 HMAC-SHA256, 2 HMAC-SHA512; the subkey is the rest of the bytes.
//
// The password is the UTF-8 bytes of what was typed, not normalised, as
// ASP.NET's KeyDerivation.Pbkdf2 encodes it.
//
// Sources, read for this package:
//   - ASP.NET Core's PasswordHasher (the formats, the v2 constants, the
//     v3 minimum salt and subkey of 128 bits, the rehash rule):
//     https://github.com/dotnet/aspnetcore/blob/main/src/Identity/Extensions.Core/src/PasswordHasher.cs
//   - its default parameters since .NET 7, HMAC-SHA512 and 100,000
//     iterations (before: HMAC-SHA256 and 10,000), changed by
//     https://github.com/dotnet/aspnetcore/pull/40987 and pinned by the test
//     HashPassword_DefaultsToVersion3 in
//     https://github.com/dotnet/aspnetcore/blob/b89c4a3af6d0d573fb44d616b725bf3c7c238902/src/Identity/test/Identity.Test/PasswordHasherTest.cs
//     and https://learn.microsoft.com/en-us/dotnet/api/microsoft.aspnetcore.identity.passwordhasheroptions.iterationcount
//   - the password's UTF-8 encoding:
//     https://github.com/dotnet/aspnetcore/blob/10156c496cbe7b2a40f36d31866399b582b25a10/src/DataProtection/Cryptography.KeyDerivation/src/PBKDF2/NetCorePbkdf2Provider.cs
//   - ASP.NET Identity 2 for .NET Framework (Microsoft.AspNet.Identity.Core),
//     which writes and verifies v2 only:
//     https://github.com/aspnet/AspNetIdentity/blob/9c48993a446288032f9824633e6dae81257da06e/src/Microsoft.AspNet.Identity.Core/Crypto.cs
//
// Which format to write is a choice with a cost, see IdentityV2 and Default: the
// open-source ancestor of Power Pages (Adxstudio Portals, published as
// xRM Portals Community Edition) hashes with Microsoft.AspNet.Identity.Core
// 2.2.1, which refuses v3 hashes (see its UserManager and packages.config,
// https://github.com/Adoxio/xRM-Portals-Community-Edition/blob/93323e3f16ef2ad1cd2a78066d555f6857fd0e1d/Framework/Adxstudio.Xrm/packages.config).
// Whether today's hosted Power Pages verifies v3 is not documented: before
// writing v3 to a site's contacts, check that its Power Pages signs a user
// in with one.
package aspnetid

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strconv"
)

// Version is a hash's format, named by its first byte.
type Version uint8

// The two formats. The zero Version is V2, as in the byte string.
const (
	V2 Version = 0x00 // PBKDF2-HMAC-SHA1, 1000 iterations, fixed sizes
	V3 Version = 0x01 // the PRF, iterations and salt length in a header
)

func (v Version) String() string {
	switch v {
	case V2:
		return "v2"
	case V3:
		return "v3"
	}
	return "Version(" + strconv.Itoa(int(v)) + ")"
}

// PRF is the pseudo-random function of PBKDF2, numbered as ASP.NET's
// KeyDerivationPrf, which is how a v3 header names it. The zero PRF is
// HMACSHA1, the weakest.
type PRF uint32

// The PRFs a v3 hash may name; any other value makes it malformed.
const (
	HMACSHA1   PRF = 0
	HMACSHA256 PRF = 1
	HMACSHA512 PRF = 2
)

func (f PRF) String() string {
	switch f {
	case HMACSHA1:
		return "HMACSHA1"
	case HMACSHA256:
		return "HMACSHA256"
	case HMACSHA512:
		return "HMACSHA512"
	}
	return "PRF(" + strconv.FormatUint(uint64(f), 10) + ")"
}

// size is the PRF's output length in bytes, or 0 for an unknown PRF.
func (f PRF) size() int {
	switch f {
	case HMACSHA1:
		return sha1.Size
	case HMACSHA256:
		return sha256.Size
	case HMACSHA512:
		return sha512.Size
	}
	return 0
}

func (f PRF) derive(pw string, salt []byte, iter, keyLen int) ([]byte, error) {
	switch f {
	case HMACSHA1:
		return pbkdf2.Key(sha1.New, pw, salt, iter, keyLen)
	case HMACSHA256:
		return pbkdf2.Key(sha256.New, pw, salt, iter, keyLen)
	case HMACSHA512:
		return pbkdf2.Key(func() hash.Hash { return sha512.New() }, pw, salt, iter, keyLen)
	}
	return nil, fmt.Errorf("aspnetid: unknown PRF %v", f)
}

// Params are a hash's format and PBKDF2 parameters. The zero value is
// invalid (a v2 hash has fixed parameters, and the zero value's are not
// them): use Default, IdentityV2, or Default with fields changed in tests.
type Params struct {
	// Version is the format. V2 allows only the parameters of IdentityV2.
	Version Version
	// PRF is the HMAC of PBKDF2.
	PRF PRF
	// Iterations is the PBKDF2 iteration count, between 1 and
	// MaxIterations. Fewer than Default's make a stolen hash cheaper to
	// guess: use them only in tests.
	Iterations uint32
	// SaltLen is the salt length in bytes, at least 16 (128 bits, the
	// minimum ASP.NET verifies).
	SaltLen uint32
	// KeyLen is the subkey length in bytes, at least 16 (128 bits, the
	// minimum ASP.NET verifies).
	KeyLen uint32
}

// Default are ASP.NET Core Identity's parameters for new hashes since
// .NET 7: v3, HMAC-SHA512, 100,000 iterations, a 16-byte salt and a
// 32-byte subkey: the parameters to give Hash, and those Verify compares a
// hash with.
// ASP.NET Core verifies any v3 hash, whatever its header names; ASP.NET
// Identity 2 on .NET Framework verifies none (see IdentityV2).
var Default = Params{Version: V3, PRF: HMACSHA512, Iterations: 100_000, SaltLen: 16, KeyLen: 32}

// IdentityV2 are the fixed parameters of the v2 format, ASP.NET Identity 2's and
// ASP.NET Core's IdentityV2 compatibility mode: HMAC-SHA1, 1000 iterations,
// a 16-byte salt and a 32-byte subkey. They are weak (one guess at a
// stolen hash costs about 120 times less than with Default: 0.37 ms
// against 46 ms on one core here): write them only for a site whose Power
// Pages cannot verify v3. Verifying with IdentityV2 as the current parameters never asks
// for a rehash, as in ASP.NET's IdentityV2 mode.
var IdentityV2 = Params{Version: V2, PRF: HMACSHA1, Iterations: 1000, SaltLen: 16, KeyLen: 32}

// Bounds on hashes. The column is written by Power Pages and by anyone
// with write access to contacts, so a hash is input: these bounds stop one
// from making a sign-in cost minutes of CPU or much memory.
const (
	// MaxIterations bounds the PBKDF2 work of one verification: the
	// iteration count times the PRF blocks the subkey needs (a 64-byte
	// subkey of HMAC-SHA1 needs 4), so that a long subkey cannot
	// multiply the cost. 10,000,000 blocks take about 5 s of one core
	// with HMAC-SHA512 (100 times Default, BenchmarkVerifyMaxIterations);
	// ASP.NET has no bound but its signed 32-bit iteration count. A
	// caller verifying hashes it did not write should still limit
	// concurrent sign-ins.
	MaxIterations = 10_000_000
	// MaxEncodedLen is the longest encoded hash Verify decodes, in bytes.
	MaxEncodedLen = 1024
	// DataverseMaxLen is the length of the adx_identity_passwordhash
	// column (a text column of MaxLength 128 in the contact's metadata):
	// Params.Validate refuses parameters whose hashes would not fit, so
	// that every hash Hash writes can be stored. Default's take 84
	// characters, IdentityV2's 68.
	DataverseMaxLen = 128
)

// v3HeaderLen is the marker and the three uint32 fields of a v3 hash.
const v3HeaderLen = 1 + 4 + 4 + 4

// minLen is the shortest salt and subkey ASP.NET verifies: 128 bits.
const minLen = 128 / 8

// ErrMalformedHash means an encoded hash could not be parsed, or names
// parameters outside the bounds above. The wrapping error's text says
// which; it never contains the hash.
var ErrMalformedHash = errors.New("aspnetid: malformed hash")

// check is the rule every hash's parameters follow, whether parsed or to
// be written.
func (p Params) check() error {
	switch p.Version {
	case V2:
		if p != IdentityV2 {
			return errors.New("v2 has fixed parameters: HMACSHA1, 1000 iterations, a 16-byte salt and a 32-byte subkey")
		}
		return nil
	case V3:
	default:
		return fmt.Errorf("unknown format %v", p.Version)
	}
	size := p.PRF.size()
	switch {
	case size == 0:
		return fmt.Errorf("unknown PRF %d", uint32(p.PRF))
	case p.Iterations < 1:
		return errors.New("iterations must be at least 1")
	case p.SaltLen < minLen:
		return fmt.Errorf("salt must be at least %d bytes", minLen)
	case p.KeyLen < minLen:
		return fmt.Errorf("subkey must be at least %d bytes", minLen)
	}
	blocks := (uint64(p.KeyLen) + uint64(size) - 1) / uint64(size)
	if uint64(p.Iterations)*blocks > MaxIterations {
		return fmt.Errorf("iterations times subkey blocks above %d", MaxIterations)
	}
	return nil
}

// rawLen is the length of a hash's byte string.
func (p Params) rawLen() uint64 {
	if p.Version == V2 {
		return 1 + uint64(p.SaltLen) + uint64(p.KeyLen)
	}
	return v3HeaderLen + uint64(p.SaltLen) + uint64(p.KeyLen)
}

// Validate reports whether p can be used to write hashes: a known format
// and PRF, IdentityV2's exact values for v2, 1 to MaxIterations iterations (times
// the subkey's PRF blocks), salt and subkey of at least 16 bytes, and a
// hash no longer than DataverseMaxLen characters.
func (p Params) Validate() error {
	if err := p.check(); err != nil {
		return errors.New("aspnetid: params: " + err.Error())
	}
	if n := base64.StdEncoding.EncodedLen(int(p.rawLen())); n > DataverseMaxLen {
		return fmt.Errorf("aspnetid: params: a hash would take %d characters, more than the %d of adx_identity_passwordhash", n, DataverseMaxLen)
	}
	return nil
}

// Hash hashes pw with p and a fresh random salt and returns the encoded
// hash, for example "AQAAAAIAAYagAAAAE..." for Default. It does not apply
// the password policy: call password.Policy.Check first (which also refuses
// invalid UTF-8, which no ASP.NET site could be sent).
func Hash(pw string, p Params) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("aspnetid: salt: %w", err)
	}
	return hashWithSalt(pw, p, salt)
}

func hashWithSalt(pw string, p Params, salt []byte) (string, error) {
	key, err := p.PRF.derive(pw, salt, int(p.Iterations), int(p.KeyLen))
	if err != nil {
		return "", fmt.Errorf("aspnetid: %w", err)
	}
	b := make([]byte, 0, p.rawLen())
	b = append(b, byte(p.Version))
	if p.Version == V3 {
		b = binary.BigEndian.AppendUint32(b, uint32(p.PRF))
		b = binary.BigEndian.AppendUint32(b, p.Iterations)
		b = binary.BigEndian.AppendUint32(b, p.SaltLen)
	}
	b = append(b, salt...)
	b = append(b, key...)
	return base64.StdEncoding.EncodeToString(b), nil
}

// Verify reports whether pw matches the encoded hash (v2 or v3, whatever
// PRF and iteration count a v3 header names within the bounds), comparing
// subkeys in constant time. needsRehash is true when ok and the hash is
// weaker than Default (see Params.Verify). A hash that cannot be parsed
// gives ok false and an error wrapping ErrMalformedHash; it never panics.
// The password's length is not bounded here (HMAC hashes a long key once,
// not once per iteration): the sign-in refuses ones over password.MaxBytes
// before verifying.
func Verify(encoded, pw string) (ok, needsRehash bool, err error) {
	return Default.Verify(encoded, pw)
}

// Verify is the package function Verify with p as the parameters for new
// hashes. needsRehash is true when ok, p is v3, and the hash is v2, or
// names a weaker PRF (HMAC-SHA1 < HMAC-SHA256 < HMAC-SHA512, the order of
// their numbers) or fewer iterations than p: ASP.NET Core's rule. Salt and
// subkey lengths do not count, as there. With p of version V2 it is
// never true.
func (p Params) Verify(encoded, pw string) (ok, needsRehash bool, err error) {
	return p.verify(encoded, pw, MaxIterations)
}

func (p Params) verify(encoded, pw string, maxWork uint64) (ok, needsRehash bool, err error) {
	hp, salt, key, err := decode(encoded, maxWork)
	if err != nil {
		return false, false, err
	}
	got, err := hp.PRF.derive(pw, salt, int(hp.Iterations), len(key))
	if err != nil {
		return false, false, fmt.Errorf("aspnetid: %w", err)
	}
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return false, false, nil
	}
	return true, p.weaker(hp), nil
}

// weaker reports whether a hash made with h should be rewritten with p.
func (p Params) weaker(h Params) bool {
	if p.Version != V3 {
		return false
	}
	return h.Version == V2 || h.PRF < p.PRF || h.Iterations < p.Iterations
}

// ParseHash returns the format and parameters of an encoded hash, for logs
// and metrics; the salt and subkey are not returned. An error wraps
// ErrMalformedHash.
func ParseHash(encoded string) (Params, error) {
	p, _, _, err := decode(encoded, MaxIterations)
	return p, err
}

func decode(encoded string, maxWork uint64) (Params, []byte, []byte, error) {
	fail := func(why string) (Params, []byte, []byte, error) {
		return Params{}, nil, nil, fmt.Errorf("%w: %s", ErrMalformedHash, why)
	}
	switch {
	case encoded == "":
		return fail("empty")
	case len(encoded) > MaxEncodedLen:
		return fail("longer than " + strconv.Itoa(MaxEncodedLen) + " bytes")
	}
	b, err := base64.StdEncoding.Strict().DecodeString(encoded)
	if err != nil {
		return fail("not standard base64")
	}
	if len(b) == 0 {
		return fail("empty")
	}
	var p Params
	var salt, key []byte
	switch Version(b[0]) {
	case V2:
		if uint64(len(b)) != IdentityV2.rawLen() {
			return fail("v2 hash of " + strconv.Itoa(len(b)) + " bytes, not " + strconv.FormatUint(IdentityV2.rawLen(), 10))
		}
		p = IdentityV2
		salt, key = b[1:1+IdentityV2.SaltLen], b[1+IdentityV2.SaltLen:]
	case V3:
		if len(b) < v3HeaderLen {
			return fail("v3 header truncated")
		}
		p = Params{
			Version:    V3,
			PRF:        PRF(binary.BigEndian.Uint32(b[1:])),
			Iterations: binary.BigEndian.Uint32(b[5:]),
			SaltLen:    binary.BigEndian.Uint32(b[9:]),
		}
		rest := b[v3HeaderLen:]
		if uint64(p.SaltLen) > uint64(len(rest)) {
			return fail("salt length beyond the hash")
		}
		salt, key = rest[:p.SaltLen], rest[p.SaltLen:]
		p.KeyLen = uint32(len(key))
	default:
		return fail("unknown format marker " + strconv.Itoa(int(b[0])))
	}
	if err := p.check(); err != nil {
		return fail(err.Error())
	}
	if size := uint64(p.PRF.size()); uint64(p.Iterations)*((uint64(p.KeyLen)+size-1)/size) > maxWork {
		return fail("iterations times subkey blocks above " + strconv.FormatUint(maxWork, 10))
	}
	return p, salt, key, nil
}
