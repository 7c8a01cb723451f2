package password

import (
	"errors"
	"strings"
	"testing"
)

// cheap keeps argon2id fast under -race; production uses Default.
var cheap = Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}

func TestHashPasswordRoundTrip(t *testing.T) {
	for _, pw := range []string{"correct horse battery", "ünïcødé pässwörd", strings.Repeat("x", MaxBytes)} {
		h, err := Hash(pw, cheap)
		if err != nil {
			t.Fatalf("HashPassword: %v", err)
		}
		if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
			t.Errorf("encoding %q lacks the PHC prefix", h)
		}
		ok, rehash, err := cheap.Verify(h, pw)
		if !ok || rehash || err != nil {
			t.Errorf("Verify(right) = %v, %v, %v; want true, false, nil", ok, rehash, err)
		}
		ok, rehash, err = cheap.Verify(h, pw+"x")
		if ok || rehash || err != nil {
			t.Errorf("Verify(wrong) = %v, %v, %v; want false, false, nil", ok, rehash, err)
		}
	}
	a, _ := Hash("same password", cheap)
	b, _ := Hash("same password", cheap)
	if a == b {
		t.Error("two hashes of one password are equal: salt not random")
	}
}

func TestDefaultParams(t *testing.T) {
	h, err := Hash("correct horse battery", Default)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("default encoding %q", h)
	}
	ok, rehash, err := Verify(h, "correct horse battery")
	if !ok || rehash || err != nil {
		t.Errorf("VerifyPassword = %v, %v, %v", ok, rehash, err)
	}
}

func TestNeedsRehash(t *testing.T) {
	h, err := Hash("correct horse battery", cheap)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		current Params
		want    bool
	}{
		{"same", cheap, false},
		{"more memory", Params{Memory: 128, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 32}, true},
		{"more iterations", Params{Memory: 64, Iterations: 2, Parallelism: 1, SaltLen: 16, KeyLen: 32}, true},
		{"more lanes", Params{Memory: 64, Iterations: 1, Parallelism: 2, SaltLen: 16, KeyLen: 32}, true},
		{"longer salt", Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 32, KeyLen: 32}, true},
		{"shorter key", Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 16}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := tt.current.Verify(h, "correct horse battery")
			if !ok || err != nil || rehash != tt.want {
				t.Errorf("Verify = %v, %v, %v; want true, %v, nil", ok, rehash, err, tt.want)
			}
		})
	}
	if _, rehash, _ := tests[1].current.Verify(h, "wrong password"); rehash {
		t.Error("a wrong password asks for a rehash")
	}
}

func TestParsePasswordHash(t *testing.T) {
	p, err := ParseHash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43))
	if err != nil {
		t.Fatal(err)
	}
	if p != Default {
		t.Errorf("ParsePasswordHash = %+v, want %+v", p, Default)
	}
}

func TestMalformedHashes(t *testing.T) {
	salt := "c2FsdHNhbHRzYWx0c2FsdA" // 16 bytes
	key := strings.Repeat("A", 43)   // 32 bytes
	good := "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key
	if _, err := ParseHash(good); err != nil {
		t.Fatalf("control hash rejected: %v", err)
	}
	tests := []struct{ name, enc string }{
		{"empty", ""},
		{"plain text", "hunter2"},
		{"no leading dollar", "argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"too few parts", "$argon2id$v=19$m=64,t=1,p=1$" + salt},
		{"too many parts", good + "$x"},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key},
		{"missing version", "$argon2id$m=64,t=1,p=1$" + salt + "$" + key + "$"},
		{"missing param", "$argon2id$v=19$m=64,t=1$" + salt + "$" + key},
		{"repeated param", "$argon2id$v=19$m=64,m=64,p=1$" + salt + "$" + key},
		{"unknown param", "$argon2id$v=19$m=64,t=1,p=1,x=1$" + salt + "$" + key},
		{"non-numeric", "$argon2id$v=19$m=lots,t=1,p=1$" + salt + "$" + key},
		{"negative", "$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key},
		{"overflow", "$argon2id$v=19$m=99999999999,t=1,p=1$" + salt + "$" + key},
		{"huge memory", "$argon2id$v=19$m=4194304,t=1,p=1$" + salt + "$" + key},
		{"memory below 8p", "$argon2id$v=19$m=8,t=1,p=2$" + salt + "$" + key},
		{"zero iterations", "$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key},
		{"huge iterations", "$argon2id$v=19$m=64,t=1000000,p=1$" + salt + "$" + key},
		{"zero lanes", "$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key},
		{"lanes over 255", "$argon2id$v=19$m=4096,t=1,p=256$" + salt + "$" + key},
		{"padded salt", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key},
		{"bad salt chars", "$argon2id$v=19$m=64,t=1,p=1$!!!!$" + key},
		{"short salt", "$argon2id$v=19$m=64,t=1,p=1$YWJj$" + key},
		{"url base64 key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + strings.Repeat("_", 43)},
		{"short key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$YWJjZA"},
		{"empty key", "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, rehash, err := cheap.Verify(tt.enc, "password")
			if ok || rehash || !errors.Is(err, ErrMalformedHash) {
				t.Errorf("Verify(%q) = %v, %v, %v; want false, false, ErrMalformedHash", tt.enc, ok, rehash, err)
			}
		})
	}
}

func TestHashPasswordRejectsBadParams(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{"zero", Params{}},
		{"no lanes", Params{Memory: 64, Iterations: 1, SaltLen: 16, KeyLen: 32}},
		{"short salt", Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 4, KeyLen: 32}},
		{"short key", Params{Memory: 64, Iterations: 1, Parallelism: 1, SaltLen: 16, KeyLen: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Hash("password", tt.p); err == nil {
				t.Errorf("Hash(%+v) succeeded", tt.p)
			}
		})
	}
}

func FuzzVerifyPassword(f *testing.F) {
	f.Add("$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$" + strings.Repeat("A", 43))
	f.Add("$argon2id$v=19$m=,t=,p=$$")
	f.Fuzz(func(t *testing.T, enc string) {
		// Keep each case cheap: cap the memory cost the fuzzer may ask for.
		if p, err := ParseHash(enc); err == nil && (p.Memory > 1024 || p.Iterations > 2) {
			t.Skip()
		}
		ok, _, err := cheap.Verify(enc, "password")
		if ok && err != nil {
			t.Fatal("ok with an error")
		}
	})
}
