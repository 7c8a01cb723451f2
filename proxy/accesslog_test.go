package proxy

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func TestLineBufferBatchesAndFlushesOnClose(t *testing.T) {
	w := &countingWriter{}
	b := NewLineBuffer(w, time.Hour, 64) // the ticker never fires in this test
	for i := 0; i < 10; i++ {
		b.Write([]byte("line 0123456789\n")) // 16 bytes: four fit in 64
	}
	w.mu.Lock()
	writes, got := w.writes, w.buf.String()
	w.mu.Unlock()
	if writes != 2 || strings.Count(got, "\n") != 8 {
		t.Fatalf("before close: %d writes, %d lines", writes, strings.Count(got, "\n"))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if w.writes != 3 || strings.Count(w.buf.String(), "\n") != 10 {
		t.Fatalf("after close: %d writes, %d lines", w.writes, strings.Count(w.buf.String(), "\n"))
	}
	// A line longer than the buffer goes straight through.
	b = NewLineBuffer(w, time.Hour, 8)
	b.Write([]byte("a much longer line\n"))
	if !strings.HasSuffix(w.buf.String(), "a much longer line\n") {
		t.Fatal("long line not written")
	}
	b.Close()
	b.Close() // twice is fine
}

func TestLineBufferFlushesOnInterval(t *testing.T) {
	w := &countingWriter{}
	b := NewLineBuffer(w, 5*time.Millisecond, 1<<10)
	defer b.Close()
	b.Write([]byte("x\n"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		w.mu.Lock()
		n := w.buf.Len()
		w.mu.Unlock()
		if n == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not flushed by the ticker")
		}
		time.Sleep(time.Millisecond)
	}
}
