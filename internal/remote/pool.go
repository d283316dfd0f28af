package remote

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Pool keeps one connection per host (address, port and user), reused by
// every operation on that host, and at most Config.MaxHosts hosts
// connected at once: an operation on one more host waits until a
// connected host has nothing under way, closes that host's connection and
// connects. A connection found lost is dialled again. It is safe for
// concurrent use.
type Pool struct {
	cfg  Config
	dial dialFunc // tests count connections with it

	mu      sync.Mutex
	hosts   map[string]*pooled
	changed chan struct{} // closed, and replaced, whenever a slot may have come free
	closed  bool
}

// pooled is a host's connection in the pool, or its dial under way.
type pooled struct {
	ready  chan struct{} // closed once the dial is over
	conn   *Conn
	err    error
	leases int
	used   time.Time
}

// NewPool returns an empty pool that dials with cfg.
func NewPool(cfg Config) *Pool {
	return &Pool{cfg: cfg.withDefaults(), hosts: map[string]*pooled{}, changed: make(chan struct{})}
}

// Do runs fn with the connection to h, dialling it first if the pool has
// none. The connection is the pool's: fn must not close it or keep it
// after returning. fn must not call Do itself: with MaxHosts hosts busy,
// the inner call would wait for a slot the outer one holds.
func (p *Pool) Do(ctx context.Context, h Host, fn func(*Conn) error) error {
	c, release, err := p.lease(ctx, h)
	if err != nil {
		return err
	}
	defer release()
	return explainLost(c, fn(c))
}

// explainLost makes err, the failure of an operation on c, the
// LostError it comes from, when c was given up on: the operation itself
// saw only its channel end ("connection lost", "EOF"), and the fault is
// the host's, not the operation's. What the operation said stays in the
// message, but is no longer an error to look into (an argument a step
// blamed it on is not at fault).
func explainLost(c *Conn, err error) error {
	if err == nil {
		return nil
	}
	lost := c.lostErr()
	if lost == nil || errors.Is(err, lost) {
		return err
	}
	return &lostOperationError{lost: lost, op: err}
}

// lostOperationError is an operation that failed because its connection
// was given up on: it is the LostError, with what the operation said as
// text, and still says whether a write may be in place (MayBeInPlace).
type lostOperationError struct {
	lost, op error
}

func (e *lostOperationError) Error() string { return e.lost.Error() + ", failing: " + e.op.Error() }

func (e *lostOperationError) Unwrap() []error {
	if MayBeInPlace(e.op) {
		return []error{e.lost, e.op}
	}
	return []error{e.lost}
}

// lease returns the connection to h, counted as in use until release is
// called.
func (p *Pool) lease(ctx context.Context, h Host) (*Conn, func(), error) {
	key := h.key()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil, fmt.Errorf("connecting to %s: the pool is %w", h, errClosed)
		}
		e := p.hosts[key]
		switch {
		case e != nil && !isClosed(e.ready):
			p.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, nil, context.Cause(ctx)
			}
			if e.err != nil {
				return nil, nil, e.err
			}
			continue
		case e != nil && e.conn.broken():
			p.remove(key, e)
			p.mu.Unlock()
			continue
		case e != nil:
			e.leases++
			p.mu.Unlock()
			return e.conn, func() { p.release(e) }, nil
		}
		if len(p.hosts) >= p.cfg.MaxHosts {
			victim := p.idlest()
			if victim == "" {
				wait := p.changed
				p.mu.Unlock()
				select {
				case <-wait:
				case <-ctx.Done():
					return nil, nil, context.Cause(ctx)
				}
				continue
			}
			p.remove(victim, p.hosts[victim])
		}
		e = &pooled{ready: make(chan struct{})}
		p.hosts[key] = e
		p.mu.Unlock()

		c, err := dial(ctx, p.cfg, h, p.dial)

		p.mu.Lock()
		e.conn, e.err = c, err
		close(e.ready)
		if err != nil {
			delete(p.hosts, key)
			p.signal()
		} else if p.closed {
			c.Close()
		}
		p.mu.Unlock()
		if err != nil {
			return nil, nil, err
		}
	}
}

// release ends a lease.
func (p *Pool) release(e *pooled) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.leases--
	e.used = time.Now()
	p.signal()
}

// idlest returns the key of the connected host with nothing under way
// that was used least recently, "" when every host is busy or dialling.
func (p *Pool) idlest() string {
	var key string
	var oldest time.Time
	for k, e := range p.hosts {
		if !isClosed(e.ready) || e.leases > 0 {
			continue
		}
		if key == "" || e.used.Before(oldest) {
			key, oldest = k, e.used
		}
	}
	return key
}

// remove closes a host's connection and frees its slot; p.mu is held.
// Operations still under way on a lost connection fail by themselves.
func (p *Pool) remove(key string, e *pooled) {
	delete(p.hosts, key)
	if e.conn != nil {
		e.conn.Close()
	}
	p.signal()
}

// signal wakes whoever waits for a slot; p.mu is held.
func (p *Pool) signal() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close closes every connection, ending whatever is under way on them;
// the pool takes no more operations.
func (p *Pool) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, e := range p.hosts {
		if isClosed(e.ready) {
			p.remove(k, e)
		}
	}
	return nil
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
