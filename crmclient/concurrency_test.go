package crmclient

import (
	"net/http"
	"testing"
)

func TestParseDOPHint(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   int
		ok     bool
	}{
		{[]string{"8"}, 8, true},
		{[]string{" 8 "}, 8, true},
		{[]string{"1"}, 1, true},
		{[]string{"52"}, 52, true},
		{[]string{"10000"}, 10000, true},
		{[]string{"0008"}, 8, true},
		{nil, 0, false},
		{[]string{""}, 0, false},
		{[]string{"0"}, 0, false},
		{[]string{"00000"}, 0, false},
		{[]string{"-1"}, 0, false},
		{[]string{"+4"}, 0, false},
		{[]string{"10001"}, 0, false},
		{[]string{"99999"}, 0, false},
		{[]string{"999999"}, 0, false},
		{[]string{"9223372036854775808"}, 0, false},
		{[]string{"4.0"}, 0, false},
		{[]string{"4,8"}, 0, false},
		{[]string{"4 8"}, 0, false},
		{[]string{"0x10"}, 0, false},
		{[]string{"1e2"}, 0, false},
		{[]string{"four"}, 0, false},
		{[]string{"\u0664"}, 0, false}, // Arabic-Indic four
		{[]string{"4\x00"}, 0, false},
		{[]string{"4", "8"}, 0, false}, // repeated: ambiguous
	} {
		h := http.Header{}
		for _, v := range tc.values {
			h.Add(dopHintHeader, v)
		}
		got, ok := parseDOPHint(h)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseDOPHint(%q) = %d, %v, want %d, %v", tc.values, got, ok, tc.want, tc.ok)
		}
	}
}

func FuzzParseDOPHint(f *testing.F) {
	for _, s := range []string{"8", "0", "-1", "10000", "10001", "abc", " 7 ", "1,2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parseDOPHint(http.Header{"X-Ms-Dop-Hint": {s}})
		if ok != (n != 0) || n < 0 || n > maxDOPHint {
			t.Fatalf("parseDOPHint(%q) = %d, %v", s, n, ok)
		}
	})
}

// TestSlotsLimit: lowering the limit leaves requests in flight alone and
// admits new ones only below it; raising it admits waiters at once.
func TestSlotsLimit(t *testing.T) {
	s := newSlots(4)
	ctx := t.Context()
	for range 4 {
		if err := s.acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n, changed := s.setLimit(2); n != 2 || !changed {
		t.Fatalf("setLimit(2) = %d, %v", n, changed)
	}
	got := make(chan struct{})
	go func() { _ = s.acquire(ctx); close(got) }()
	for range 3 {
		s.release() // 3 in flight, then 2, then 1: the waiter gets in at 1
	}
	<-got
	if s.inFlight != 2 {
		t.Fatalf("in flight %d, want 2", s.inFlight)
	}
	for _, tc := range []struct{ in, want int }{{0, 1}, {-5, 1}, {100, 4}, {3, 3}} {
		if n, _ := s.setLimit(tc.in); n != tc.want || s.current() != tc.want {
			t.Fatalf("setLimit(%d) = %d, want %d", tc.in, n, tc.want)
		}
	}
}
