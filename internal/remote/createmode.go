package remote

import (
	"encoding/binary"
	"io"
)

// SFTP (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks) packet
// types, open flags and attribute flags that ownerOnlyCreates reads.
const (
	fxpOpen        = 3
	fxpMkdir       = 14
	fxfCreat       = 0x08
	attrPerms      = 0x04
	createFileMode = 0o600
	createDirMode  = 0o700
)

// ownerOnlyCreates carries the SFTP client's requests to the server and
// gives every create a mode: an SSH_FXP_OPEN that may create a file, and
// an SSH_FXP_MKDIR, sent without attributes get the permissions 0600 and
// 0700.
//
// Why: pkg/sftp's OpenFile and Mkdir send no attributes (its open packet
// carries attribute flags 0), and OpenSSH's sftp-server then creates a
// file with 0666 and a directory with 0777, less its umask: usually 0644
// and 0755, so a new file is readable by every user on the host until a
// later chmod, and whoever opens it in that moment keeps reading it after
// the chmod, key included. With the permissions in the open itself, the
// server's open(2) creates the file owner-only, and it never exists
// otherwise. 0600, not 0: the SSH user must be able to open a temporary
// file a write cut short leaves behind (to remove or inspect it) without
// being root, and 0600 grants nobody else anything; the final mode is set
// once the owner is. pkg/sftp offers no way to send attributes with an
// open, hence this rewrite of its byte stream; the tests check the mode a
// new file has on a real sshd before anything is written to it.
//
// pkg/sftp writes each packet under a lock (a header and a payload, in one
// or two writes), so packets reach Write whole and in order; Write still
// parses the stream itself and does not rely on that.
type ownerOnlyCreates struct {
	w io.WriteCloser

	head  [5]byte // length and type of the packet being read
	nhead int
	pass  int    // bytes of the current packet still to pass on as they are
	keep  []byte // the open or mkdir packet being gathered, header included
	total int    // its whole length, header included
}

// Write implements io.Writer.
func (o *ownerOnlyCreates) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		switch {
		case o.pass > 0:
			k := min(o.pass, len(p))
			if _, err := o.w.Write(p[:k]); err != nil {
				return 0, err
			}
			o.pass -= k
			p = p[k:]
		case o.keep != nil:
			k := min(o.total-len(o.keep), len(p))
			o.keep = append(o.keep, p[:k]...)
			p = p[k:]
			if len(o.keep) == o.total {
				pkt := o.keep
				o.keep = nil
				if _, err := o.w.Write(withCreateMode(pkt)); err != nil {
					return 0, err
				}
			}
		default:
			k := copy(o.head[o.nhead:], p)
			o.nhead += k
			p = p[k:]
			if o.nhead < len(o.head) {
				continue
			}
			o.nhead = 0
			length := int(binary.BigEndian.Uint32(o.head[:4]))
			if t := o.head[4]; (t == fxpOpen || t == fxpMkdir) && length < 1<<20 {
				o.total = 4 + length
				o.keep = append(make([]byte, 0, o.total+4), o.head[:]...)
				if len(o.keep) == o.total {
					pkt := o.keep
					o.keep = nil
					if _, err := o.w.Write(pkt); err != nil {
						return 0, err
					}
				}
				continue
			}
			if _, err := o.w.Write(o.head[:]); err != nil {
				return 0, err
			}
			o.pass = length - 1
		}
	}
	return n, nil
}

// Close implements io.Closer.
func (o *ownerOnlyCreates) Close() error { return o.w.Close() }

// withCreateMode returns the open or mkdir packet pkt (length prefix
// included) with the create mode as its attributes, when it creates and
// carries none; any other packet is returned as it is.
func withCreateMode(pkt []byte) []byte {
	body := pkt[5:] // after length and type
	if len(body) < 4+4 {
		return pkt
	}
	pathLen := int(binary.BigEndian.Uint32(body[4:8]))
	rest := body[8:]
	if pathLen > len(rest) {
		return pkt
	}
	rest = rest[pathLen:]
	mode := uint32(createDirMode)
	if pkt[4] == fxpOpen {
		if len(rest) < 4 || binary.BigEndian.Uint32(rest[:4])&fxfCreat == 0 {
			return pkt
		}
		rest = rest[4:]
		mode = createFileMode
	}
	// What is left must be attribute flags 0 and nothing else.
	if len(rest) != 4 || binary.BigEndian.Uint32(rest) != 0 {
		return pkt
	}
	out := append(pkt[:len(pkt)-4:len(pkt)-4], 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(out[len(out)-8:], attrPerms)
	binary.BigEndian.PutUint32(out[len(out)-4:], mode)
	binary.BigEndian.PutUint32(out[:4], uint32(len(out)-4))
	return out
}
