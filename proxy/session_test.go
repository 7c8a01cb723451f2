package proxy

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func testKey(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

func TestSessionCodecRotation(t *testing.T) {
	old, _ := newSessionCodec("s", [][]byte{testKey(1)}, time.Hour)
	rotated, _ := newSessionCodec("s", [][]byte{testKey(2), testKey(1)}, time.Hour)
	retired, _ := newSessionCodec("s", [][]byte{testKey(2)}, time.Hour)
	in := &Session{ID: "sid", UserID: "u1", Stamp: "st", AuthTime: 100, LastSeen: 100, CheckedAt: 100, Roles: []string{"admin"}}

	v, err := old.encode(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotated.decode(v)
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("rotated codec: %v %+v", err, got)
	}
	if _, err := retired.decode(v); err == nil {
		t.Fatal("a cookie made with a retired key still decodes")
	}
	nv, _ := rotated.encode(in)
	if _, err := old.decode(nv); err == nil {
		t.Fatal("the new key did not encode: old codec decodes the rotated cookie")
	}
	// A cookie for another name (purpose) does not decode.
	other, _ := newSessionCodec("other", [][]byte{testKey(1)}, time.Hour)
	if _, err := other.decode(v); err == nil {
		t.Fatal("cookie decoded under another name")
	}
	// Tampering with any byte fails.
	for i := 0; i < len(v); i += 7 {
		b := []byte(v)
		b[i] ^= 0x01
		if s, err := old.decode(string(b)); err == nil && !reflect.DeepEqual(s, in) {
			t.Fatalf("tampered cookie at %d decoded to %+v", i, s)
		}
	}
	// A well-formed but empty session is refused.
	empty, _ := old.encode(&Session{})
	if _, err := old.decode(empty); err == nil {
		t.Fatal("empty session accepted")
	}
}

func TestSessionExpiry(t *testing.T) {
	p := sessionPolicy{idle: time.Hour, absolute: 12 * time.Hour, remember: 30 * 24 * time.Hour, stampCheck: 2 * time.Minute}
	t0 := time.Unix(1_000_000, 0)
	s := &Session{AuthTime: t0.Unix(), LastSeen: t0.Unix()}
	tests := []struct {
		name    string
		at      time.Time
		last    time.Time
		remem   bool
		expired bool
	}{
		{"fresh", t0.Add(time.Minute), t0, false, false},
		{"idle", t0.Add(61 * time.Minute), t0, false, true},
		{"active but absolute", t0.Add(12 * time.Hour), t0.Add(12*time.Hour - time.Minute), false, true},
		{"remember idle ok", t0.Add(48 * time.Hour), t0.Add(24 * time.Hour), true, false},
		{"remember absolute", t0.Add(31 * 24 * time.Hour), t0.Add(31*24*time.Hour - time.Minute), true, true},
		{"issued in the future", t0.Add(-time.Hour), t0.Add(-time.Hour), false, true},
	}
	for _, tt := range tests {
		s.LastSeen, s.Remember = tt.last.Unix(), tt.remem
		if got := p.expired(s, tt.at); got != tt.expired {
			t.Errorf("%s: expired = %v, want %v", tt.name, got, tt.expired)
		}
	}
}

// FuzzSessionDecode feeds arbitrary cookie values to the decoder: it must
// never panic, and anything it accepts must be exactly a session the codec
// made (no forgery).
func FuzzSessionDecode(f *testing.F) {
	c, _ := newSessionCodec("s", [][]byte{testKey(1)}, time.Hour)
	in := &Session{ID: "sid", UserID: "u1", Stamp: "st", AuthTime: 100, LastSeen: 100, CheckedAt: 100}
	valid, _ := c.encode(in)
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add("")
	f.Add("MTcwMDAwMDAwMHxabc|def")
	f.Add("a|b|c")
	f.Fuzz(func(t *testing.T, v string) {
		s, err := c.decode(v)
		if err != nil {
			return
		}
		if !reflect.DeepEqual(s, in) {
			t.Fatalf("decoded a session the codec never made: %+v from %q", s, v)
		}
	})
}
