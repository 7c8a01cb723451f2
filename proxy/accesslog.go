package proxy

import (
	"io"
	"sync"
	"time"
)

// LineBuffer batches log lines into fewer writes: it flushes every interval,
// or at once when max bytes are pending. One write(2) per request costs the
// access log a sixth of the gateway's throughput; batching removes most of
// that. The price: lines not yet flushed are lost if the process is killed
// (at most one interval's worth; a graceful shutdown calls Close, which
// flushes). Use it for access logs only, never for audit or error logs.
//
// The zero value is not usable; build it with NewLineBuffer.
type LineBuffer struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	max  int
	stop chan struct{}
	done chan struct{}
}

// NewLineBuffer starts a LineBuffer over w. Each Write must hold whole lines
// (slog handlers write one record per call), so lines never interleave with
// other writers of w.
func NewLineBuffer(w io.Writer, interval time.Duration, max int) *LineBuffer {
	b := &LineBuffer{w: w, max: max, buf: make([]byte, 0, max), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = b.Flush()
			case <-b.stop:
				return
			}
		}
	}()
	return b
}

// Write queues p, flushing first when the buffer would exceed max.
func (b *LineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > b.max {
		if err := b.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > b.max {
			return b.w.Write(p)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes what is pending.
func (b *LineBuffer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *LineBuffer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	return err
}

// Close stops the flusher and writes what is pending.
func (b *LineBuffer) Close() error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	return b.Flush()
}
