package testweb

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
)

// forwarder copies connections made to a listener in one namespace, byte
// for byte, to an address the harness's own (root) namespace reaches: the
// controller's way to the Vault on the machine's loopback. It neither
// terminates nor reads TLS.
type forwarder struct {
	addr string // "127.0.0.1:PORT", in the namespace of the listener
	to   string
	ln   net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// forward listens on ns's loopback (a free port) and copies every
// connection to to.
func forward(ns *testhosts.Namespace, to string) (*forwarder, error) {
	f := &forwarder{to: to, conns: map[net.Conn]bool{}}
	// The listening socket belongs to ns for its whole life; the
	// goroutines that accept and dial do not run in it, so the dials
	// reach the root namespace's loopback.
	if err := ns.Do(func() error {
		var err error
		f.ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		return nil, err
	}
	f.addr = f.ln.Addr().String()
	f.wg.Add(1)
	go f.accept()
	return f, nil
}

func (f *forwarder) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Add(1)
		go f.pipe(c)
	}
}

// track records c for close; false when the forwarder is closed already.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// pipe copies c to a new connection to f.to and back, until both sides
// have closed; each direction's end is passed on as a half-close, as TLS's
// close_notify and HTTP clients expect.
func (f *forwarder) pipe(c net.Conn) {
	defer f.wg.Done()
	if !f.track(c) {
		c.Close()
		return
	}
	defer f.untrack(c)
	up, err := net.DialTimeout("tcp", f.to, 5*time.Second)
	if err != nil {
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	done := make(chan struct{}, 2)
	copyHalf := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go copyHalf(up, c)
	go copyHalf(c, up)
	<-done
	<-done
}

// close stops listening, closes every open connection and waits for the
// copies to end.
func (f *forwarder) close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	err := f.ln.Close()
	f.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
