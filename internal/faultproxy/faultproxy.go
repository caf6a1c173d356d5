// Package faultproxy is a TCP proxy for tests that injects the network
// faults a connected registry must survive: connections cut in the middle
// of a transfer, corrupted bytes, a parent that hangs, and a parent that is
// gone. It listens on 127.0.0.1 only.
package faultproxy

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy forwards connections to an upstream address.
type Proxy struct {
	ln       net.Listener
	upstream string

	// Downstream counts bytes sent from upstream to clients.
	Downstream atomic.Int64

	mu sync.Mutex
	// cutAfter cuts the next connection whose downstream transfer passes
	// this many bytes (once); 0 disables.
	cutAfter int64
	// corruptAt flips one byte at this downstream offset of a connection
	// (once); 0 disables.
	corruptAt int64
	hang      bool
	down      bool
	conns     map[net.Conn]bool
	wg        sync.WaitGroup
}

// New starts a proxy on 127.0.0.1 to upstream.
func New(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, upstream: upstream, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// CutOnceAfter cuts the first connection that sends more than n bytes
// downstream, right after byte n.
func (p *Proxy) CutOnceAfter(n int64) { p.mu.Lock(); p.cutAfter = n; p.mu.Unlock() }

// CorruptOnceAt flips the byte at downstream offset n of the first
// connection that gets that far.
func (p *Proxy) CorruptOnceAt(n int64) { p.mu.Lock(); p.corruptAt = n; p.mu.Unlock() }

// SetHang makes new and existing connections stop forwarding anything.
func (p *Proxy) SetHang(v bool) { p.mu.Lock(); p.hang = v; p.mu.Unlock() }

// SetDown refuses new connections and closes open ones.
func (p *Proxy) SetDown(v bool) {
	p.mu.Lock()
	p.down = v
	if v {
		for c := range p.conns {
			_ = c.Close()
		}
	}
	p.mu.Unlock()
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		_ = c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
	p.mu.Unlock()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			_ = c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	up, err := net.DialTimeout("tcp", p.upstream, 5*time.Second)
	if err != nil {
		_ = client.Close()
		return
	}
	p.track(client, true)
	p.track(up, true)
	defer func() {
		_ = client.Close()
		_ = up.Close()
		p.track(client, false)
		p.track(up, false)
	}()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, p.gate(client)); _ = up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { p.downstream(client, up); done <- struct{}{} }()
	<-done
	<-done
}

// gate blocks reads while the proxy hangs.
func (p *Proxy) gate(r io.Reader) io.Reader {
	return readerFunc(func(b []byte) (int, error) {
		for i := 0; i < 600; i++ {
			p.mu.Lock()
			hang := p.hang
			p.mu.Unlock()
			if !hang {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		return r.Read(b)
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// downstream copies upstream to the client, applying cut and corruption.
func (p *Proxy) downstream(client, up net.Conn) {
	buf := make([]byte, 32<<10)
	var sent int64
	src := p.gate(up)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			p.mu.Lock()
			if p.corruptAt > 0 && sent < p.corruptAt && sent+int64(n) > p.corruptAt {
				chunk[p.corruptAt-sent] ^= 0xff
				p.corruptAt = 0
			}
			cut := p.cutAfter > 0 && sent+int64(n) > p.cutAfter
			if cut {
				chunk = chunk[:p.cutAfter-sent]
				p.cutAfter = 0
			}
			p.mu.Unlock()
			w, werr := client.Write(chunk)
			sent += int64(w)
			p.Downstream.Add(int64(w))
			if cut || werr != nil {
				_ = client.Close()
				_ = up.Close()
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				_ = client.Close()
			} else if tc, ok := client.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}
