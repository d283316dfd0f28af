package remote

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Conn is one SSH connection to a host, logged in. Commands run on
// sessions multiplexed over it (at most Config.MaxSessions at once), and
// every file operation goes through one SFTP client opened on first use.
// It is safe for concurrent use.
type Conn struct {
	host     Host
	client   *ssh.Client
	sessions chan struct{} // a slot per command under way
	done     chan struct{} // closed when the connection is gone

	mu   sync.Mutex
	sftp *sftp.Client
	lost error // why the connection was given up on, if it was

	closeOnce sync.Once

	// Tests only: rawCreates sends SFTP creates as pkg/sftp does, with
	// the server's default mode (the broken variant the tests must
	// catch); hook is called between the stages of a write.
	rawCreates bool
	hook       func(stage, tmp string)
}

func newConn(h Host, cfg Config, client *ssh.Client) *Conn {
	c := &Conn{
		host:     h,
		client:   client,
		sessions: make(chan struct{}, cfg.MaxSessions),
		done:     make(chan struct{}),
	}
	go func() {
		client.Wait()
		close(c.done)
	}()
	go c.keepAlive(cfg.KeepAliveInterval, cfg.KeepAliveMax)
	return c
}

// Host returns the host the connection is to.
func (c *Conn) Host() Host { return c.host }

// Close closes the connection, ending whatever is under way on it.
func (c *Conn) Close() error {
	return c.close(nil)
}

// close closes the connection; lost, when not nil, says why it was given
// up on, and is what the operations it ends report.
func (c *Conn) close(lost error) error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.lost = lost
		sc := c.sftp
		c.mu.Unlock()
		// The SSH connection first: the SFTP client's Close waits for
		// its reader, which ends only when its channel does, and the
		// channel of a host that stopped answering ends only with the
		// connection.
		err = c.client.Close()
		if sc != nil {
			sc.Close()
		}
	})
	return err
}

// lostErr returns why the connection was given up on, nil when it was
// not (closed by its user, or still open).
func (c *Conn) lostErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// broken reports whether the connection is gone (closed, or lost).
func (c *Conn) broken() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// keepAlive probes the server every interval while the connection lives,
// as ssh's ServerAliveInterval and ServerAliveCountMax do: at each tick
// it sends a probe, unless the last one is still unanswered, which counts
// as missed; after max missed in a row it closes the connection, failing
// what was under way on it. A host cut off is so noticed, even by an
// operation waiting for a reply that will never come, within (max+1)
// intervals of its last answer.
func (c *Conn) keepAlive(interval time.Duration, max int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var answered chan error // the probe under way; nil when none is
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case err := <-answered:
			if err != nil {
				c.close(fmt.Errorf("%s: the connection was lost (%v)", c.host.Subject(), err))
				return
			}
			answered, missed = nil, 0
			continue
		case <-t.C:
		}
		if answered != nil {
			missed++
			if missed >= max {
				c.close(&LostError{Host: c.host, Probes: max, Interval: interval})
				return
			}
			continue
		}
		answered = make(chan error, 1)
		go func(answered chan<- error) {
			// OpenSSH answers an unknown global request with a
			// failure: any reply shows the host is there.
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}(answered)
	}
}

// LostError is a connection given up on because its host stopped
// answering: Probes keepalive probes in a row, one every Interval, went
// unanswered (a host cut off, powered off, or behind a link that drops
// everything). What was under way on the connection failed with it.
type LostError struct {
	Host     Host
	Probes   int
	Interval time.Duration
}

// Error names the host and says how long it was silent.
func (e *LostError) Error() string {
	return fmt.Sprintf("%s stopped answering (no answer to %d keepalive probes sent %s apart): the connection was given up",
		e.Host.Subject(), e.Probes, e.Interval)
}

// sftpClient returns the connection's SFTP client, opening it on first
// use. Its creates are owner-only from their first instant (see
// ownerOnlyCreates).
func (c *Conn) sftpClient() (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	if c.broken() {
		return nil, fmt.Errorf("%s: the connection is closed", c.host.Subject())
	}
	s, err := c.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("%s: opening an SFTP session: %w", c.host.Subject(), err)
	}
	w, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	r, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.RequestSubsystem("sftp"); err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: the SSH server offers no SFTP (Subsystem sftp in sshd_config): %w", c.host.Subject(), err)
	}
	if !c.rawCreates {
		w = &ownerOnlyCreates{w: w}
	}
	sc, err := sftp.NewClientPipe(r, w)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%s: starting SFTP: %w", c.host.Subject(), err)
	}
	go func() {
		sc.Wait()
		s.Close()
	}()
	c.sftp = sc
	return sc, nil
}

// errClosed is an operation on a connection or pool already closed.
var errClosed = errors.New("closed")
