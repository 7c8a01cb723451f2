package outbox

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempts int
		jitter   float64
		want     time.Duration
	}{
		{1, 0, 500 * time.Millisecond},
		{1, 1, time.Second},
		{2, 0, time.Second},
		{3, 0.5, 3 * time.Second},
		{10, 1, 512 * time.Second},
		{11, 0, 5 * time.Minute}, // 1024s capped at 10m
		{11, 1, 10 * time.Minute},
		{1000, 0, 5 * time.Minute}, // no overflow
		{0, 0, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		got := backoff(tt.attempts, time.Second, 10*time.Minute, tt.jitter)
		if got != tt.want {
			t.Errorf("backoff(%d, jitter %v) = %v, want %v", tt.attempts, tt.jitter, got, tt.want)
		}
	}
}

func TestTruncateError(t *testing.T) {
	long := string(make([]byte, maxLastError-1)) + "é" // the cut splits é
	if got := truncateError(long); len(got) != maxLastError-1 {
		t.Errorf("truncateError kept %d bytes, want %d", len(got), maxLastError-1)
	}
	if got := truncateError("short"); got != "short" {
		t.Errorf("truncateError(short) = %q", got)
	}
}
