package aspnetid

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// The vectors of ASP.NET Core itself, the independent implementation
// Power Pages' format comes from: the literal hashes of "my password" in
// src/Identity/test/Identity.Test/PasswordHasherTest.cs of dotnet/aspnetcore
// at commit b89c4a3af6d0d573fb44d616b725bf3c7c238902,
// https://github.com/dotnet/aspnetcore/blob/b89c4a3af6d0d573fb44d616b725bf3c7c238902/src/Identity/test/Identity.Test/PasswordHasherTest.cs
// (names as there; the salts of the V2_SHA1_1000 and V3_SHA512_* 128-bit
// ones are 00 01 .. 0f, from the test's sequential random generator).
const aspnetPassword = "my password"

const (
	aspnetV2SHA1_1000         = "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJg=="
	aspnetV3SHA1_250          = "AQAAAAAAAAD6AAAAEAhftMyfTJylOlZT+eEotFXd1elee8ih5WsjXaR3PA9M"
	aspnetV3SHA256_250000     = "AQAAAAEAA9CQAAAAIESkQuj2Du8Y+kbc5lcN/W/3NiAZFEm11P27nrSN5/tId+bR1SwV8CO1Jd72r4C08OLvplNlCDc3oQZ8efcW+jQ="
	aspnetV3SHA512_50         = "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHw"
	aspnetV3SHA512_250_512bit = "AQAAAAIAAAD6AAAAIJbVi5wbMR+htSfFp8fTw8N8GOS/Sje+S/4YZcgBfU7EQuqv4OkVYmc4VJl9AGZzmRTxSkP7LtVi9IWyUxX8IAAfZ8v+ZfhjCcudtC1YERSqE1OEdXLW9VukPuJWBBjLuw=="
	aspnetV3SHA512_10000      = "AQAAAAIAACcQAAAAEAABAgMEBQYHCAkKCwwNDg9B0Oxwty+PGIDSp95gcCfzeDvA4sGapUIUov8usXfD6A=="
	aspnetV3SHA512_100000     = "AQAAAAIAAYagAAAAEAABAgMEBQYHCAkKCwwNDg/Q8A0WMKbtHQJQ2DHCdoEeeFBrgNlldq6vH4qX/CGqGQ=="
)

// sequentialSalt is the salt ASP.NET's test generator gives a fresh hasher.
func sequentialSalt(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// TestASPNETCoreVectors verifies every success vector of ASP.NET Core's
// PasswordHasherTest with the results ASP.NET gives: in its IdentityV3 mode
// (Default here) only the SHA512/100,000 hash needs no rehash; in its
// IdentityV2 mode none does.
func TestASPNETCoreVectors(t *testing.T) {
	tests := []struct {
		name        string
		hash        string
		want        Params
		rehashV3    bool
		notInV2Mode bool // absent from ASP.NET's IdentityV2-mode success list
	}{
		{"V2_SHA1_1000iter_128salt_256subkey", aspnetV2SHA1_1000, IdentityV2, true, false},
		{"V3_SHA1_250iter_128salt_128subkey", aspnetV3SHA1_250, Params{V3, HMACSHA1, 250, 16, 16}, true, true},
		{"V3_SHA256_250000iter_256salt_256subkey", aspnetV3SHA256_250000, Params{V3, HMACSHA256, 250000, 32, 32}, true, true},
		{"V3_SHA512_50iter_128salt_128subkey", aspnetV3SHA512_50, Params{V3, HMACSHA512, 50, 16, 16}, true, false},
		{"V3_SHA512_250iter_256salt_512subkey", aspnetV3SHA512_250_512bit, Params{V3, HMACSHA512, 250, 32, 64}, true, false},
		{"V3_SHA512_10000iter_128salt_256subkey", aspnetV3SHA512_10000, Params{V3, HMACSHA512, 10000, 16, 32}, true, true},
		{"V3_SHA512_100000iter_128salt_256subkey", aspnetV3SHA512_100000, Default, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParseHash(tt.hash)
			if err != nil || p != tt.want {
				t.Fatalf("ParseHash = %+v, %v; want %+v", p, err, tt.want)
			}
			ok, rehash, err := Verify(tt.hash, aspnetPassword)
			if !ok || err != nil || rehash != tt.rehashV3 {
				t.Errorf("Verify = %v, %v, %v; want true, %v, nil", ok, rehash, err, tt.rehashV3)
			}
			ok, rehash, err = IdentityV2.Verify(tt.hash, aspnetPassword)
			if !ok || err != nil || rehash {
				t.Errorf("IdentityV2.Verify = %v, %v, %v; want true, false, nil", ok, rehash, err)
			}
			ok, rehash, err = Verify(tt.hash, aspnetPassword+" ")
			if ok || rehash || err != nil {
				t.Errorf("Verify(wrong password) = %v, %v, %v; want false, false, nil", ok, rehash, err)
			}
		})
	}
}

// TestASPNETCoreFailureVectors are VerifyHashedPassword_FailureCases of the
// same file: ASP.NET says Failed for each. Here a tampered subkey and a v3
// subkey with bytes added are wrong passwords (the hash is well formed);
// the rest are malformed.
func TestASPNETCoreFailureVectors(t *testing.T) {
	tests := []struct {
		name      string
		hash      string
		malformed bool
	}{
		{"v2 incorrect password", "AAABAgMEBQYHCAkKCwwNDg+uAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAALtH1uJg==", false},
		{"v2 too short", "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggE=", true},
		{"v2 extra data at end", "AAABAgMEBQYHCAkKCwwNDg+ukCEMDf0yyQ29NYubggHIVY0sdEUfdyeM+E1LtH1uJgAAAAAAAAAAAAA=", true},
		{"v3 incorrect password", "AQAAAAAAAAD6AAAAEAhftMyfTJyAAAAAAAAAAAAAAAAAAAih5WsjXaR3PA9M", false},
		{"v3 too short", "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4A=", true},
		{"v3 extra data at end", "AQAAAAIAAAAyAAAAEOMwvh3+FZxqkdMBz2ekgGhwQ4B6pZWND6zgESBuWiHwAAAAAAAAAAAA", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := Verify(tt.hash, aspnetPassword)
			if ok || rehash {
				t.Errorf("Verify = %v, %v; want false, false", ok, rehash)
			}
			if got := errors.Is(err, ErrMalformedHash); got != tt.malformed {
				t.Errorf("err = %v; malformed %v, want %v", err, got, tt.malformed)
			}
		})
	}
}

// TestHashMatchesASPNETCore writes, with ASP.NET's test salt 00..0f, the
// very strings ASP.NET Core writes in HashPassword_DefaultsToVersion3 and
// HashPassword_Version2: what crmgate stores is byte for byte what
// ASP.NET Core would.
func TestHashMatchesASPNETCore(t *testing.T) {
	for _, tt := range []struct {
		p    Params
		want string
	}{
		{Default, aspnetV3SHA512_100000},
		{IdentityV2, aspnetV2SHA1_1000},
		{Params{V3, HMACSHA512, 10000, 16, 32}, aspnetV3SHA512_10000},
	} {
		got, err := hashWithSalt(aspnetPassword, tt.p, sequentialSalt(16))
		if err != nil || got != tt.want {
			t.Errorf("hash %+v = %q, %v; want %q", tt.p, got, err, tt.want)
		}
	}
}

// Cross-check vectors from two more independent PBKDF2 implementations on
// this machine, Python's hashlib (OpenSSL-backed in CPython 3.11.7) and
// the OpenSSL 3.0 command line, covering what the ASP.NET vectors do not:
// non-ASCII passwords, an empty password, salts of 20 and 24 bytes, a
// 20-byte SHA1 and a 48-byte SHA512 subkey.
//
// Made with this script, run as `python3 gen.py`:
//
//	import base64, hashlib, struct
//	def v3(pw, prf, it, salt, klen):
//	    name = {0: 'sha1', 1: 'sha256', 2: 'sha512'}[prf]
//	    key = hashlib.pbkdf2_hmac(name, pw.encode('utf-8'), salt, it, klen)
//	    return base64.b64encode(b'\x01' + struct.pack('>III', prf, it, len(salt)) + salt + key).decode()
//	def v2(pw, salt):
//	    return base64.b64encode(b'\x00' + salt + hashlib.pbkdf2_hmac('sha1', pw.encode('utf-8'), salt, 1000, 32)).decode()
//	s16 = bytes(range(0xa0, 0xb0)); s24 = bytes(range(24)); s20 = b'crmgate-salt-vector!'
//	for args in [('correct horse battery', s16), ('p\u00e4ssw\u00f6rd \U0001F511', s16)]:
//	    print('v2', repr(args[0]), v2(*args))
//	for args in [('correct horse battery', 2, 100000, s16, 32), ('correct horse battery', 1, 10000, s16, 32),
//	             ('correct horse battery', 0, 5000, s24, 20), ('p\u00e4ssw\u00f6rd \U0001F511', 2, 1234, s20, 48),
//	             ('', 2, 1, s16, 16)]:
//	    print('v3', repr(args[0]), args[1:3], v3(*args))
var pythonVectors = []struct {
	pw   string
	want Params
	hash string
}{
	{"correct horse battery", IdentityV2, "AKChoqOkpaanqKmqq6ytrq8vyr/9w6UXwq4zRpRAJQKLDi+BLcwhOoCuW6B3y2hTSg=="},
	{"pässwörd 🔑", IdentityV2, "AKChoqOkpaanqKmqq6ytrq+n96D9HIf9E4mutw1wReSuDv97yb6LGJohVV3OsOLEYg=="},
	{"correct horse battery", Default, "AQAAAAIAAYagAAAAEKChoqOkpaanqKmqq6ytrq/l1k//mE6fwxoO87ytpE0MulCojqZgCxZuoFeD1cEWYQ=="},
	{"correct horse battery", Params{V3, HMACSHA256, 10000, 16, 32}, "AQAAAAEAACcQAAAAEKChoqOkpaanqKmqq6ytrq+GYxNZeCUfwYg1CZhW5S9bq8sL+4ski7YOq0EN//GsAA=="},
	{"correct horse battery", Params{V3, HMACSHA1, 5000, 24, 20}, "AQAAAAAAABOIAAAAGAABAgMEBQYHCAkKCwwNDg8QERITFBUWF9jmKiQ5cd53Q/2Zdj3lwEuTfJ9A"},
	{"pässwörd 🔑", Params{V3, HMACSHA512, 1234, 20, 48}, "AQAAAAIAAATSAAAAFGNybWdhdGUtc2FsdC12ZWN0b3IhOnwK2qp2x/ye3nIL7eglv1sC56dwW8BuVsvR64MISJ3rGz05JxiAFm4P9GguefKU"},
	{"", Params{V3, HMACSHA512, 1, 16, 16}, "AQAAAAIAAAABAAAAEKChoqOkpaanqKmqq6ytrq/whXag6r5AnwcFXwt7hLkq"},
}

func TestPythonVectors(t *testing.T) {
	for _, v := range pythonVectors {
		p, err := ParseHash(v.hash)
		if err != nil || p != v.want {
			t.Errorf("ParseHash(%q) = %+v, %v; want %+v", v.hash, p, err, v.want)
			continue
		}
		if ok, _, err := Verify(v.hash, v.pw); !ok || err != nil {
			t.Errorf("Verify(%q, %q) = %v, %v; want true, nil", v.hash, v.pw, ok, err)
		}
		if ok, _, err := Verify(v.hash, v.pw+"x"); ok || err != nil {
			t.Errorf("Verify(%q, wrong) = %v, %v; want false, nil", v.hash, ok, err)
		}
		raw, _ := base64.StdEncoding.DecodeString(v.hash)
		salt := raw[len(raw)-int(p.KeyLen)-int(p.SaltLen) : len(raw)-int(p.KeyLen)]
		if got, err := hashWithSalt(v.pw, p, salt); got != v.hash || err != nil {
			t.Errorf("hash of %q = %q, %v; want %q", v.pw, got, err, v.hash)
		}
	}
}

// TestOpenSSLSubkeys compares derived subkeys with OpenSSL's, made by
//
//	openssl kdf -keylen 32 -kdfopt digest:SHA512 -kdfopt pass:'correct horse battery' \
//	  -kdfopt hexsalt:a0a1a2a3a4a5a6a7a8a9aaabacadaeaf -kdfopt iter:100000 PBKDF2
//	openssl kdf -keylen 32 -kdfopt digest:SHA1 -kdfopt pass:'my password' \
//	  -kdfopt hexsalt:000102030405060708090a0b0c0d0e0f -kdfopt iter:1000 PBKDF2
//
// (OpenSSL 3.0.19): the first is the subkey of the Python Default vector,
// the second that of ASP.NET Core's v2 vector, so the three
// implementations agree.
func TestOpenSSLSubkeys(t *testing.T) {
	for _, tt := range []struct {
		hash, opensslHex string
	}{
		{pythonVectors[2].hash, "E5:D6:4F:FF:98:4E:9F:C3:1A:0E:F3:BC:AD:A4:4D:0C:BA:50:A8:8E:A6:60:0B:16:6E:A0:57:83:D5:C1:16:61"},
		{aspnetV2SHA1_1000, "AE:90:21:0C:0D:FD:32:C9:0D:BD:35:8B:9B:82:01:C8:55:8D:2C:74:45:1F:77:27:8C:F8:4D:4B:B4:7D:6E:26"},
	} {
		want, err := hex.DecodeString(strings.ReplaceAll(tt.opensslHex, ":", ""))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := base64.StdEncoding.DecodeString(tt.hash)
		if got := raw[len(raw)-32:]; string(got) != string(want) {
			t.Errorf("subkey of %q = %x; OpenSSL says %x", tt.hash, got, want)
		}
	}
}

// cheap keeps tests fast under -race; production uses Default.
var cheap = Params{Version: V3, PRF: HMACSHA512, Iterations: 10, SaltLen: 16, KeyLen: 32}

func TestHashRoundTrip(t *testing.T) {
	for _, p := range []Params{cheap, IdentityV2, {V3, HMACSHA1, 7, 16, 16}, {V3, HMACSHA256, 3, 32, 32}} {
		for _, pw := range []string{"correct horse battery", "ünïcødé pässwörd", ""} {
			h, err := Hash(pw, p)
			if err != nil {
				t.Fatalf("Hash(%+v): %v", p, err)
			}
			if got, err := ParseHash(h); err != nil || got != p {
				t.Errorf("ParseHash(Hash(%+v)) = %+v, %v", p, got, err)
			}
			if ok, _, err := p.Verify(h, pw); !ok || err != nil {
				t.Errorf("Verify(right) = %v, %v", ok, err)
			}
			if ok, _, err := p.Verify(h, pw+"x"); ok || err != nil {
				t.Errorf("Verify(wrong) = %v, %v", ok, err)
			}
		}
	}
	a, _ := Hash("same password", cheap)
	b, _ := Hash("same password", cheap)
	if a == b {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestHashDefault(t *testing.T) {
	h, err := Hash("correct horse battery", Default)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "AQAAAAIAAYagAAAAE") || len(h) != 84 {
		t.Errorf("Default hash %q: want the v3 SHA512/100000/16 header and 84 characters", h)
	}
	if ok, rehash, err := Verify(h, "correct horse battery"); !ok || rehash || err != nil {
		t.Errorf("Verify = %v, %v, %v; want true, false, nil", ok, rehash, err)
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Params{Default, IdentityV2, cheap, {V3, HMACSHA1, MaxIterations / 2, 16, 40}, {V3, HMACSHA512, 1, 16, 67}} {
		if err := p.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", p, err)
		}
	}
	for _, tt := range []struct {
		p    Params
		want string
	}{
		{Params{}, "v2 has fixed parameters"},
		{Params{Version: V2, PRF: HMACSHA1, Iterations: 10000, SaltLen: 16, KeyLen: 32}, "v2 has fixed parameters"},
		{Params{Version: 2, PRF: HMACSHA512, Iterations: 1, SaltLen: 16, KeyLen: 32}, "unknown format"},
		{Params{V3, 3, 1, 16, 32}, "unknown PRF"},
		{Params{V3, HMACSHA512, 0, 16, 32}, "iterations must be at least 1"},
		{Params{V3, HMACSHA512, MaxIterations + 1, 16, 32}, "above"},
		{Params{V3, HMACSHA1, MaxIterations/2 + 1, 16, 40}, "above"}, // 40 bytes of SHA1 are 2 blocks
		{Params{V3, HMACSHA512, 1, 15, 32}, "salt must be at least 16"},
		{Params{V3, HMACSHA512, 1, 16, 15}, "subkey must be at least 16"},
		{Params{V3, HMACSHA512, 1, 16, 68}, "more than the 128"}, // 13+16+68 = 97 bytes, 132 characters
	} {
		err := tt.p.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v; want %q", tt.p, err, tt.want)
		}
		if _, err := Hash("x", tt.p); err == nil {
			t.Errorf("Hash(%+v) accepted", tt.p)
		}
	}
}

func TestNeedsRehash(t *testing.T) {
	h, err := hashWithSalt("correct horse battery", Params{V3, HMACSHA256, 20, 16, 32}, sequentialSalt(16))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		current Params
		want    bool
	}{
		{"same", Params{V3, HMACSHA256, 20, 16, 32}, false},
		{"fewer iterations", Params{V3, HMACSHA256, 19, 16, 32}, false},
		{"weaker PRF", Params{V3, HMACSHA1, 20, 16, 32}, false},
		{"other sizes", Params{V3, HMACSHA256, 20, 32, 16}, false},
		{"more iterations", Params{V3, HMACSHA256, 21, 16, 32}, true},
		{"stronger PRF", Params{V3, HMACSHA512, 20, 16, 32}, true},
		{"Default", Default, true},
		{"IdentityV2 mode", IdentityV2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := tt.current.Verify(h, "correct horse battery")
			if !ok || err != nil || rehash != tt.want {
				t.Errorf("Verify = %v, %v, %v; want true, %v, nil", ok, rehash, err, tt.want)
			}
		})
	}
	if _, rehash, _ := Default.Verify(h, "wrong password"); rehash {
		t.Error("a wrong password asks for a rehash")
	}
}

// v3 builds a v3 byte string with any header, for the malformed cases.
func v3(prf, iter, saltLen uint32, rest int) string {
	b := []byte{0x01}
	b = binary.BigEndian.AppendUint32(b, prf)
	b = binary.BigEndian.AppendUint32(b, iter)
	b = binary.BigEndian.AppendUint32(b, saltLen)
	b = append(b, make([]byte, rest)...)
	return base64.StdEncoding.EncodeToString(b)
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name, hash, why string
	}{
		{"empty", "", "empty"},
		{"not base64", "not base64!", "not standard base64"},
		{"unpadded", strings.TrimRight(aspnetV2SHA1_1000, "="), "not standard base64"},
		{"URL alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(aspnetV3SHA256_250000), "not standard base64"},
		{"non-zero padding bits", aspnetV2SHA1_1000[:len(aspnetV2SHA1_1000)-3] + "h==", "not standard base64"},
		{"too long", strings.Repeat("A", MaxEncodedLen+4), "longer than 1024"},
		{"unknown marker", base64.StdEncoding.EncodeToString(append([]byte{0x02}, make([]byte, 60)...)), "unknown format marker 2"},
		{"marker only", "AQ==", "v3 header truncated"},
		{"v2 marker only", "AA==", "v2 hash of 1 bytes"},
		{"v3 header truncated", base64.StdEncoding.EncodeToString([]byte{1, 0, 0, 0, 2, 0, 1, 0x86, 0xa0, 0, 0, 0}), "v3 header truncated"},
		{"unknown PRF", v3(3, 1000, 16, 48), "unknown PRF 3"},
		{"huge PRF", v3(0xffffffff, 1000, 16, 48), "unknown PRF 4294967295"},
		{"iterations 0", v3(2, 0, 16, 48), "iterations must be at least 1"},
		{"iterations above the cap", v3(2, MaxIterations+1, 16, 32), "above 10000000"},
		{"iterations 2^32-1", v3(1, 0xffffffff, 16, 32), "above 10000000"},
		{"long subkey multiplies the cost", v3(0, 3_000_000, 16, 16+64), "above 10000000"},
		{"salt under 128 bits", v3(2, 1000, 15, 15+32), "salt must be at least 16"},
		{"salt length 0", v3(2, 1000, 0, 48), "salt must be at least 16"},
		{"salt beyond the hash", v3(2, 1000, 49, 48), "salt length beyond the hash"},
		{"salt length 2^32-1", v3(2, 1000, 0xffffffff, 48), "salt length beyond the hash"},
		{"subkey under 128 bits", v3(2, 1000, 16, 16+15), "subkey must be at least 16"},
		{"no subkey", v3(2, 1000, 16, 16), "subkey must be at least 16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := Verify(tt.hash, "my password")
			if ok || rehash || !errors.Is(err, ErrMalformedHash) || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("Verify = %v, %v, %v; want false, false, ErrMalformedHash (%s)", ok, rehash, err, tt.why)
			}
			if _, err := ParseHash(tt.hash); !errors.Is(err, ErrMalformedHash) {
				t.Errorf("ParseHash err = %v", err)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for got, want := range map[string]string{
		V2.String(): "v2", V3.String(): "v3", Version(7).String(): "Version(7)",
		HMACSHA1.String(): "HMACSHA1", HMACSHA256.String(): "HMACSHA256", HMACSHA512.String(): "HMACSHA512", PRF(9).String(): "PRF(9)",
	} {
		if got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}

// fuzzMaxWork keeps the fuzzer from spending seconds on a hash it made
// with ten million iterations; the parsing is the same as Verify's.
const fuzzMaxWork = 5000

// FuzzVerify checks that no encoded hash and password make Verify panic,
// that a success is never malformed, and that ParseHash and Verify agree
// on what is malformed. Run with
// `go test ./authz/password/aspnetid -run '^$' -fuzz FuzzVerify -fuzztime 60s`.
func FuzzVerify(f *testing.F) {
	for _, h := range []string{aspnetV2SHA1_1000, aspnetV3SHA1_250, aspnetV3SHA512_50, aspnetV3SHA512_250_512bit,
		pythonVectors[4].hash, pythonVectors[6].hash, "", "AQ==", "AA==", v3(3, 1, 16, 32), v3(2, 1, 0xffffffff, 32), v3(2, 1, 16, 16)} {
		f.Add(h, aspnetPassword)
	}
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		ok, rehash, err := Default.verify(encoded, pw, fuzzMaxWork)
		if err != nil && (ok || rehash) {
			t.Fatalf("Verify = %v, %v, %v", ok, rehash, err)
		}
		if rehash && !ok {
			t.Fatal("rehash without ok")
		}
		_, _, _, perr := decode(encoded, fuzzMaxWork)
		if (perr == nil) != (err == nil) || (err != nil && !errors.Is(err, ErrMalformedHash)) {
			t.Fatalf("decode err %v, Verify err %v", perr, err)
		}
	})
}

func BenchmarkVerifyDefault(b *testing.B) {
	for b.Loop() {
		if ok, _, _ := Verify(aspnetV3SHA512_100000, aspnetPassword); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyV2(b *testing.B) {
	for b.Loop() {
		if ok, _, _ := Verify(aspnetV2SHA1_1000, aspnetPassword); !ok {
			b.Fatal("no match")
		}
	}
}

func BenchmarkVerifyMaxIterations(b *testing.B) {
	h, err := hashWithSalt(aspnetPassword, Params{V3, HMACSHA512, MaxIterations, 16, 32}, sequentialSalt(16))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _, _ := Verify(h, aspnetPassword); !ok {
			b.Fatal("no match")
		}
	}
}
