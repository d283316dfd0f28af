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
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.sftp != nil {
			c.sftp.Close()
		}
		c.mu.Unlock()
		err = c.client.Close()
	})
	return err
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

// keepAlive probes the server every interval while the connection lives
// and closes it after max probes in a row went unanswered, as ssh's
// ServerAliveInterval and ServerAliveCountMax do: a host cut off is then
// noticed even by an operation waiting for a reply that will never come.
func (c *Conn) keepAlive(interval time.Duration, max int) {
	t := time.NewTicker(interval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			// OpenSSH answers an unknown global request with a
			// failure: any reply shows the host is there.
			_, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case err := <-answered:
			if err != nil {
				c.Close()
				return
			}
			missed = 0
		case <-t.C:
			missed++
		case <-c.done:
			return
		}
		if missed >= max {
			c.Close()
			return
		}
	}
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
		return nil, fmt.Errorf("host %s: the connection is closed", c.host)
	}
	s, err := c.client.NewSession()
	if err != nil {
		return nil, fmt.Errorf("host %s: opening an SFTP session: %w", c.host, err)
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
		return nil, fmt.Errorf("host %s: the SSH server offers no SFTP (Subsystem sftp in sshd_config): %w", c.host, err)
	}
	if !c.rawCreates {
		w = &ownerOnlyCreates{w: w}
	}
	sc, err := sftp.NewClientPipe(r, w)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("host %s: starting SFTP: %w", c.host, err)
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
