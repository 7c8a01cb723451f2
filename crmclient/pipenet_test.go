package crmclient

import (
	"context"
	"net"
	"sync"
)

// PipeNet is an in-memory network for synctest bubbles, where real sockets
// do not work: an http.Server listens on it and the client's transport dials
// it; every dial is a net.Pipe carrying real HTTP/1.1. It is exported (in a
// test file) so the external tests in package crmclient_test share it.
type PipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewPipeNet returns an open PipeNet.
func NewPipeNet() *PipeNet { return &PipeNet{conns: make(chan net.Conn), done: make(chan struct{})} }

func (p *PipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *PipeNet) Close() error { p.once.Do(func() { close(p.done) }); return nil }

func (p *PipeNet) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

func (p *PipeNet) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
